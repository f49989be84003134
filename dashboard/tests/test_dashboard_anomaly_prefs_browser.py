"""Marking an anomaly finding as normal and undoing it on the findings page, in headless Chromium: the grid labels the
finding, the preferences file ``wattline analyze`` reads holds who marked it. Screenshots in test-artifacts/."""

from __future__ import annotations

import pytest

from analytics.anomaly.preferences import finding_id, preferences_path, read_preferences
from dashboard import ids
from dashboard.app import close_store, create_app
from dashboard.serve import DashboardServer
from dashboard.tests.helpers import browser_login
from dashboard.tests.test_dashboard_anomaly_prefs import NORTH, make_plant
from dashboard.tests.test_dashboard_pages_browser import SCREENSHOTS, WAIT_S, shot, text_of, wait_for
from tests.support import start_chromium

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture
def site(tmp_path, users_path):
    store, events = make_plant(tmp_path)
    app = create_app(str(store), users=users_path)
    server = DashboardServer(app, "127.0.0.1", 0).start()
    driver = start_chromium(tmp_path / "chromium-profile", WAIT_S)
    driver.set_window_size(1400, 1100)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver, server, store, events
    driver.quit()
    server.stop()
    close_store(app)


def _anomaly_rows(driver):
    return [r for r in driver.find_elements("css selector", f"#{ids.FINDINGS_GRID} .ag-center-cols-container .ag-row")
            if "40 kW above" in r.text]


def test_a_plant_manager_marks_an_anomaly_as_normal_and_undoes_it(site):
    driver, server, store, events = site
    path = preferences_path(str(store))
    browser_login(driver, server.url, "anna")
    driver.get(server.url + "findings")
    row = wait_for(lambda: _anomaly_rows(driver), "the anomaly finding in the grid")[0]
    row.find_element("css selector", "[col-id='kind']").click()
    wait_for(lambda: not driver.find_element("id", ids.ANOMALY_MARK).get_attribute("disabled"), "Mark as normal on")
    driver.find_element("id", ids.ANOMALY_NOTE).send_keys("warm-up after the weekend")
    driver.find_element("id", ids.ANOMALY_MARK).click()
    message = wait_for(lambda: "marked as normal" in text_of(driver, ids.ANOMALY_MSG) and text_of(driver, ids.ANOMALY_MSG),
                       "the confirmation")
    assert "anna" in message and "next 'wattline analyze'" in message
    wait_for(lambda: any("marked normal" in r.text for r in _anomaly_rows(driver)), "the grid's 'marked normal'")
    (pattern,) = read_preferences(path).normal_patterns
    assert (pattern.id, pattern.machine, pattern.marked_by, pattern.note) == (
        finding_id(events[0]), NORTH, "anna", "warm-up after the weekend")
    wait_for(lambda: "by anna" in text_of(driver, ids.ANOMALY_INFO), "the card saying who marked it")
    shot(driver, "findings-anomaly-marked-normal")
    wait_for(lambda: not driver.find_element("id", ids.ANOMALY_UNDO).get_attribute("disabled"), "Undo on")
    driver.find_element("id", ids.ANOMALY_UNDO).click()
    wait_for(lambda: "reported again" in text_of(driver, ids.ANOMALY_MSG), "the undo's confirmation")
    wait_for(lambda: not any("marked normal" in r.text for r in _anomaly_rows(driver)), "the label gone")
    assert read_preferences(path).normal_patterns == []
