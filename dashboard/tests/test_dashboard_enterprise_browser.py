"""The Enterprise KPIs page in headless Chromium as the CDO (numbers equal the data functions'), refused to a plant
manager. Screenshot in test-artifacts."""

from __future__ import annotations

import time

import pytest

from dashboard import ids
from dashboard.tests.helpers import browser_login
from dashboard.tests.test_dashboard_pages_browser import SCREENSHOTS, text_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_cdo_sees_enterprise_kpis_and_the_report_link(browser, server, analysed):
    from core.storage import open_store
    from dashboard.overview import fmt_energy

    browser_login(browser, server.url, "carla")
    browser.get(server.url + "enterprise")
    table = wait_for(lambda: text_of(browser, ids.ENT_TABLE) if "All sites" in text_of(browser, ids.ENT_TABLE)
                     else None, "the KPI table")
    # The total energy shown is the sum the store's hourly rollups give for the last 30 days.
    with open_store(str(analysed[0])) as store:
        import datetime as dt

        from core.plant import read_plant
        from dashboard.enterprise import enterprise_view
        from dashboard.users import User
        from simulator.plant import DEFAULT_PLANT_FILE

        cdo = User("x", "cdo", (), "")
        _k, total, _r = enterprise_view(store, cdo, "all", read_plant(DEFAULT_PLANT_FILE), dt.UTC,
                                        time.time_ns(), days=30)
    assert fmt_energy(total["energy_kwh"]) in table
    href = browser.find_element("id", ids.ENT_PDF).get_attribute("href")
    assert "/report/monthly.pdf?" in href and "month=" in href
    # The work-order loop: the closure KPIs the orders give (opened by 'wattline orders sync' in the fixture).
    from core.orders.kpi import kpis
    from dashboard.orders_view import loop_table_rows
    from dashboard.tests.test_dashboard_pages_browser import orders_of

    loop = wait_for(lambda: "Auto-dispatched" in text_of(browser, ids.ENT_ORDERS) and text_of(browser, ids.ENT_ORDERS),
                    "the work-order loop")
    for row in loop_table_rows(kpis(orders_of(analysed[0]))):
        assert row["auto"] in loop and row["orders"] in loop and row["site"] in loop
    assert browser.execute_script(
        f"const p = document.querySelectorAll('#{ids.ENT_ORDERS} .js-plotly-plot'); return p.length == 2 && "
        "p[0].data.some(t => t.name == 'Reference')")
    browser.set_window_size(1400, 2400)  # the whole page in one picture
    time.sleep(0.8)  # let Plotly redraw at the new size: for the picture only, no assertion waits on it
    browser.save_screenshot(str(SCREENSHOTS / "enterprise-cdo.png"))
    browser.set_window_size(1400, 1000)
    browser_login(browser, server.url, "anna")
    browser.get(server.url + "enterprise")
    wait_for(lambda: "Not available for your role" in browser.page_source, "the refusal")
