"""The overview, findings and machine pages in headless Chromium, on history the simulator backfilled and
``wattline analyze`` analysed (real commands in subprocesses): the headline numbers must be the analysis's.

The analysed plant, the dashboard serving it and Chromium are made once per run (dashboard/tests/conftest.py) and
shared with the enterprise and materials modules.

Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dashboard import ids
from dashboard.overview import fmt_energy
from dashboard.tests.helpers import browser_login
from tests.support import wait_for as support_wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
ORDER_RULES = REPO / "core" / "orders" / "sample.yaml"
WAIT_S = 40


def wait_for(predicate, what: str, timeout: float = WAIT_S):
    """``tests.support.wait_for`` with this module's argument order (what, then timeout); an exception (an element
    replaced while Dash re-renders) counts as "not yet"."""
    return support_wait_for(predicate, timeout, what, interval=0.2)


def text_of(driver, element_id: str) -> str:
    found = driver.find_elements("id", element_id)
    return found[0].text.strip() if found else ""


def shot(driver, name: str) -> None:
    time.sleep(0.8)  # let Plotly finish drawing: for the picture only, no assertion waits on it
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_login_page_and_wrong_password(browser, server):
    browser.delete_all_cookies()
    browser.get(server.url + "overview")
    wait_for(lambda: "/login" in browser.current_url, "the redirect to the login page")
    browser.find_element("id", "username").send_keys("anna")
    browser.find_element("id", "password").send_keys("not-her-password")
    browser.find_element("id", "login-submit").click()
    assert "Wrong user name or password" in wait_for(lambda: text_of(browser, "login-error"), "the login error")
    shot(browser, "login-error")


def test_plant_manager_sees_the_analysis_numbers_on_the_overview(browser, server, analysed):
    _store, report = analysed
    browser_login(browser, server.url, "anna")
    browser.get(server.url + "overview")
    expected = fmt_energy(report["potential"]["total_kwh"])
    shown = wait_for(lambda: text_of(browser, ids.KPI_POTENTIAL_KWH) not in ("", "—") and text_of(browser, ids.KPI_POTENTIAL_KWH),
                     "the avoidable-energy tile")
    assert shown == expected
    pct = wait_for(lambda: text_of(browser, ids.KPI_POTENTIAL_PCT), "the reduction-potential tile")
    assert abs(float(pct.split()[0]) - 100 * report["potential"]["fraction"]) <= 0.15
    money = text_of(browser, ids.KPI_POTENTIAL_MONEY)
    assert money.startswith("€ ") and abs(float(money[2:].replace(",", "")) - report["potential"]["cost"]) <= 1
    wait_for(lambda: browser.execute_script(
        f"const el = document.querySelector('#{ids.OV_SANKEY} .js-plotly-plot'); return el && el.data && el.data.length"),
        "the Sankey diagram")
    assert "north" in text_of(browser, ids.USER_BOX) and "Plant manager" in text_of(browser, ids.USER_BOX)
    # Only the pages a plant manager may open are in the navigation.
    nav = text_of(browser, ids.NAV)
    assert "Overview" in nav and "Findings" in nav and "Data" not in nav
    browser.set_window_size(1400, 2300)  # the whole page in one picture
    shot(browser, "overview-plant-manager")
    browser.set_window_size(1400, 1000)


def test_findings_grid_links_to_the_machine_page(browser, server, analysed):
    _store, report = analysed
    browser_login(browser, server.url, "anna")
    browser.get(server.url + "findings")
    expected = len(report["events"]) + len(report["data_quality"])
    status = wait_for(lambda: text_of(browser, ids.FINDINGS_STATUS).startswith(f"{expected} findings")
                      and text_of(browser, ids.FINDINGS_STATUS), f"{expected} findings in the status line")
    assert fmt_energy(report["potential"]["total_kwh"]) in status
    links = wait_for(lambda: browser.find_elements("css selector", f"#{ids.FINDINGS_GRID} a[href^='/machine/']"),
                     "machine links in the grid")
    top = max(report["events"], key=lambda e: e["excess_kwh"])
    assert links[0].text == top["machine"].split("/")[-1]  # sorted by avoidable energy, largest first
    export = browser.find_element("id", ids.FINDINGS_EXPORT).get_attribute("href")
    assert "/export/findings.csv?" in export and "site=north" in export  # her only site
    shot(browser, "findings")
    links[0].click()
    wait_for(lambda: "/machine/" + top["machine"] in browser.current_url, "the machine page")
    title = wait_for(lambda: "avoidable" in text_of(browser, ids.MACHINE_TITLE) and text_of(browser, ids.MACHINE_TITLE),
                     "the machine summary")
    mine = sum(e["excess_kwh"] for e in report["events"] if e["machine"] == top["machine"])
    assert fmt_energy(mine) + " avoidable" in title
    wait_for(lambda: browser.execute_script(
        f"const el = document.querySelector('#{ids.MACHINE_GRAPH} .js-plotly-plot'); "
        "return el && el.data && el.data[0].x.length > 100"), "the machine's hourly energy")
    shot(browser, "machine")


def test_unknown_page_and_a_machine_of_another_site(browser, server):
    browser_login(browser, server.url, "sam")  # plant manager of south
    browser.get(server.url + "no-such-page")
    assert "Page not found" in wait_for(lambda: text_of(browser, "page-not-found"), "the 404 page")
    shot(browser, "not-found")
    browser.get(server.url + "machine/north/l1/cnc-01")
    wait_for(lambda: "Machine not found" in browser.find_element("tag name", "main").text, "the refusal")
    assert not browser.find_elements("id", ids.MACHINE_GRAPH)


def orders_of(store):
    from dashboard.orders import open_service

    service = open_service(f"sqlite:///{store}.orders.db", str(ORDER_RULES))
    try:
        return service.list()
    finally:
        service.engine.dispose()


def test_findings_show_their_orders_and_a_plant_manager_acknowledges_one(browser, server, analysed):
    store, _report = analysed
    orders = [o for o in orders_of(store) if o["site"] == "north"]
    assert orders, "the sample rules opened no order for north"
    browser_login(browser, server.url, "anna")
    browser.get(server.url + "findings")
    loop = wait_for(lambda: "Auto-dispatched" in text_of(browser, ids.FINDINGS_LOOP) and text_of(browser, ids.FINDINGS_LOOP),
                    "the closure KPIs")
    working = sum(1 for o in orders if o["status"] in ("open", "acknowledged", "in_progress"))
    assert f"Open orders: {working}" in loop
    target = next(o for o in orders if o["status"] == "open" and o["team"])
    cell = wait_for(lambda: [c for c in browser.find_elements("css selector", f"#{ids.FINDINGS_GRID} [col-id='order_id']")
                             if c.text == f"#{target['id']}"], f"order #{target['id']} in the grid")[0]
    row = cell.find_element("xpath", "./ancestor::div[contains(@class,'ag-row')]")
    assert "Open" in row.text and target["owner"] in row.text
    cell.click()  # selects the finding: its order and the changes anna may make appear
    info = wait_for(lambda: f"Order {target['id']}" in text_of(browser, ids.FINDINGS_ORDER_INFO)
                    and text_of(browser, ids.FINDINGS_ORDER_INFO), "the selected order")
    assert target["owner"] in info
    options = wait_for(lambda: text_of(browser, ids.FINDINGS_ACTION), "the actions")
    assert "Acknowledge" in options and "Reject" in options and "Start work" not in options
    shot(browser, "findings-orders-selected")
    browser.find_element("xpath", f"//*[@id='{ids.FINDINGS_ACTION}']//label[contains(., 'Acknowledge')]").click()
    browser.find_element("id", ids.FINDINGS_COMMENT).send_keys("seen on the morning round")
    browser.find_element("id", ids.FINDINGS_APPLY).click()
    message = wait_for(lambda: "acknowledged" in text_of(browser, ids.FINDINGS_ACTION_MSG)
                       and text_of(browser, ids.FINDINGS_ACTION_MSG), "the confirmation")
    assert f"Order {target['id']}" in message and "anna" in message
    wait_for(lambda: any(f"#{target['id']}" in r.text and "Acknowledged" in r.text
                         for r in browser.find_elements("css selector", f"#{ids.FINDINGS_GRID} .ag-row")),
             "the grid showing the new status")
    changed = next(o for o in orders_of(store) if o["id"] == target["id"])
    assert changed["status"] == "acknowledged"
    shot(browser, "findings-orders")
    # The machine page lists the order among the machine's open work orders, with its new status.
    browser.get(server.url + target["link"].lstrip("/"))
    card = wait_for(lambda: f"#{target['id']}" in text_of(browser, ids.MACHINE_ORDERS) and text_of(browser, ids.MACHINE_ORDERS),
                    "the machine's open work orders")
    assert "Acknowledged" in card and target["owner"] in card
    browser.set_window_size(1400, 2600)  # the whole page, down to the orders card, in one picture
    shot(browser, "machine-orders")
    browser.set_window_size(1400, 1000)
