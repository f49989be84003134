"""Browser tests: the real app on a free localhost port, driven by headless Chromium through selenium.

Each test writes points into the SQLite file through its own store, as a collector would, and watches the page.
Screenshots go to ``test-artifacts/screenshots/`` at the repository root.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from core.storage.sqlite import SQLiteStore
from dashboard import ids
from dashboard.app import create_app
from dashboard.serve import DashboardServer
from dashboard.tests.helpers import (
    NS,
    browser_login,
    fill_plant,
    machine_tags,
    write_field,
    write_power,
)
from tests.support import start_chromium
from tests.support import wait_for as support_wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
WAIT_S = 30

# Trace names, the last x and the number of points of every trace of a graph (None until Plotly has drawn it).
TRACES_JS = """
const el = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
if (!el || !el.data) return null;
return el.data.map(t => [t.name, t.x && t.x.length ? String(t.x[t.x.length - 1]) : null, t.x ? t.x.length : 0]);
"""
XRANGE_JS = """
const el = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
return el && el._fullLayout ? el._fullLayout.xaxis.range.map(String) : null;
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), WAIT_S)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture
def plant(tmp_path, users_path, browser):
    """(server, writer store): the dashboard on a free port over a fresh SQLite file, and a second store on the
    same file standing in for the collector; the browser is logged in as an admin."""
    path = tmp_path / "plant.db"
    writer = SQLiteStore(path)
    app = create_app(str(path), refresh_s=0.5, tz="Europe/Berlin", users=users_path)
    server = DashboardServer(app, "127.0.0.1", 0).start()
    browser_login(browser, server.url, "admin")
    yield server, writer
    server.stop()
    writer.close()


def wait_for(predicate, what: str, timeout: float = WAIT_S):
    """``tests.support.wait_for`` with this module's argument order (what, then timeout)."""
    return support_wait_for(predicate, timeout, what, interval=0.2)


def element(driver, element_id: str):
    """The element with this id, once Dash has rendered it."""
    return wait_for(lambda: (driver.find_elements("id", element_id) or [None])[0], f"element #{element_id}")


def text(driver, element_id: str) -> str:
    """The element's text; read again when Dash replaced the element between finding and reading it (a stale element
    while the page refreshes)."""
    return wait_for(lambda: [driver.find_element("id", element_id).text], f"the text of #{element_id}")[0]


def traces(driver, graph_id):
    return driver.execute_script(TRACES_JS, graph_id)


def shot(driver, name: str) -> None:
    time.sleep(0.5)  # let Plotly finish its transition: for the picture only, no assertion waits on it
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def now_s() -> int:
    return time.time_ns() // NS


def test_live_page_shows_machine_and_line_traces(browser, plant):
    server, writer = plant
    fill_plant(writer, now_s(), 900, step_s=2)
    write_field(writer, "machine_state", "state", machine_tags("L2", "l2-m2"), [now_s()], [3])  # one fault
    browser.get(server.url)
    machine = wait_for(lambda: traces(browser, ids.LIVE_MACHINE_GRAPH), "machine traces")
    assert [name for name, _x, _n in machine] == ["l1-m1", "l1-m2", "l1-m3", "l2-m1", "l2-m2"]
    assert all(n >= 80 for _name, _x, n in machine)  # 15 min of 10-s windows
    lines = wait_for(lambda: traces(browser, ids.LIVE_LINE_GRAPH), "line traces")
    assert [name for name, _x, _n in lines] == ["L1", "L2"]
    power = text(browser, ids.KPI_PLANT_POWER)
    assert power.endswith(" kW") and float(power[:-3].replace(",", "")) > 50
    assert "kWh" in text(browser, ids.KPI_ENERGY_TODAY)
    states = text(browser, ids.KPI_MACHINE_STATES)
    assert "1 fault" in states and "running" in states
    assert "Power [kW]" in text(browser, ids.LIVE_MACHINE_GRAPH)
    shot(browser, "live-15m")


def test_live_graph_follows_new_points(browser, plant):
    server, writer = plant
    start = now_s()
    fill_plant(writer, start - 60, 600, step_s=2)  # data end a minute ago
    browser.get(server.url)
    before = wait_for(lambda: traces(browser, ids.LIVE_MACHINE_GRAPH), "machine traces")
    last_x_before = {name: x for name, x, _n in before}
    # The "collector" delivers the last minute.
    t = np.arange(start - 58, now_s() + 1, 2)
    for line, n in (("L1", 3), ("L2", 2)):
        for i in range(n):
            write_power(writer, machine_tags(line, f"{line.lower()}-m{i + 1}"), t, np.full(len(t), 80.0 + i))

    def moved():
        now = traces(browser, ids.LIVE_MACHINE_GRAPH) or []
        return now if now and all(x != last_x_before[name] for name, x, _n in now) else None

    after = wait_for(moved, "the last x of every machine trace to move")
    assert all(x > last_x_before[name] for name, x, _n in after)
    shot(browser, "live-updated")


def test_empty_store_shows_the_empty_state_then_the_first_values(browser, plant):
    server, writer = plant
    browser.get(server.url)
    empty = element(browser, ids.LIVE_EMPTY)
    wait_for(lambda: empty.is_displayed() and "No data yet" in empty.text, "the empty state")
    assert "wattline demo" in empty.text
    assert not browser.find_element("id", ids.LIVE_GRAPHS).is_displayed()
    shot(browser, "live-empty")
    write_power(writer, machine_tags("L1", "first"), [now_s() - 1], [42.0])
    wait_for(lambda: traces(browser, ids.LIVE_MACHINE_GRAPH), "the first trace")
    assert not empty.is_displayed()
    assert text(browser, ids.KPI_PLANT_POWER) == "42.0 kW"


def test_range_selector_switches_to_a_day_of_rollups(browser, plant):
    server, writer = plant
    fill_plant(writer, now_s(), 26 * 3600, step_s=60)
    browser.get(server.url)
    wait_for(lambda: traces(browser, ids.LIVE_MACHINE_GRAPH), "machine traces")
    browser.find_element("xpath", f"//*[@id='{ids.LIVE_RANGE}']//label[normalize-space()='24 h']").click()

    def day_traces():
        found = traces(browser, ids.LIVE_MACHINE_GRAPH) or []
        return found if found and found[0][2] >= 280 else None  # 5-min windows over 24 h

    day = wait_for(day_traces, "24 h of 5-min windows")
    assert len(day) == 5 and day[0][2] <= 289
    x0, x1 = browser.execute_script(XRANGE_JS, ids.LIVE_MACHINE_GRAPH)
    span = np.datetime64(x1[:19]) - np.datetime64(x0[:19])
    assert span == np.timedelta64(24 * 3600, "s")
    shot(browser, "live-24h")


def test_series_page_lists_series_and_highlights_stale_ones(browser, plant):
    server, writer = plant
    fill_plant(writer, now_s(), 300, lines=(("L1", 2),))
    write_power(writer, machine_tags("L3", "retired"), [now_s() - 3 * 3600], [3.0])
    browser.get(server.url)
    element(browser, ids.NAV)
    wait_for(lambda: browser.find_elements("link text", "Data"), "the Data link")[0].click()
    rows = f"#{ids.SERIES_TABLE} .ag-center-cols-container .ag-row"
    table = wait_for(lambda: browser.find_elements("css selector", rows), "series rows")
    assert len(table) == 2 * 3 + 1
    stale = browser.find_elements("css selector", f"{rows}.stale")
    assert len(stale) == 1 and "machine=retired" in stale[0].text and "3.0 h" in stale[0].text
    summary = text(browser, ids.SERIES_SUMMARY)
    assert summary.startswith("7 series, 1 stale")
    shot(browser, "series")
