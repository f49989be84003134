"""The Collectors page in headless Chromium: an engineer sees the health a collector wrote and the data quality of
backfilled history; a plant manager may not open it. Screenshots go to ``test-artifacts/screenshots/``."""

from __future__ import annotations

import time

import pytest

from collectors.health import health_points
from core.storage import open_store
from dashboard import ids
from dashboard.app import create_app
from dashboard.serve import DashboardServer
from dashboard.tests.helpers import browser_login
from dashboard.tests.test_dashboard_pages_browser import SCREENSHOTS, text_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def server(tmp_path_factory, users_path):
    from simulator.backfill import backfill
    from simulator.plant import DEFAULT_PLANT_FILE, default_plant

    path = tmp_path_factory.mktemp("collectors") / "plant.db"
    with open_store(str(path)) as store:
        backfill(store, default_plant(6), 3, seed=3, resolution_s=300, progress=False)
        status = {"collector": "hall3", "backlog": 0, "spool": {"bytes": 0},
                  "servers": [{"name": "plc-north", "connected": True, "values_per_second": 42.5,
                               "last_value_age_s": 0.8, "reconnects": 1, "bad_nodes": []}]}
        store.write(health_points(status, time.time_ns(), {"plc-north": ["north"]}))
    app = create_app(str(path), users=users_path, plant=DEFAULT_PLANT_FILE)
    server = DashboardServer(app, "127.0.0.1", 0).start()
    yield server
    server.stop()


def test_engineer_sees_collectors_and_data_quality(browser, server):
    browser_login(browser, server.url, "erik")
    browser.get(server.url + "collectors")
    table = wait_for(lambda: text_of(browser, ids.COL_TABLE) if "hall3" in text_of(browser, ids.COL_TABLE) else None,
                     "the collector's row")
    assert "plc-north" in table and "connected" in table and "42.5" in table
    quality = wait_for(lambda: text_of(browser, ids.COL_QUALITY) if "%" in text_of(browser, ids.COL_QUALITY) else None,
                       "the data quality table")
    assert "north/" in quality and "south/" not in quality  # erik is bound to north
    assert "lowest completeness" in text_of(browser, ids.COL_SUMMARY)
    time.sleep(0.5)  # let the tables settle: for the picture only, no assertion waits on it
    browser.save_screenshot(str(SCREENSHOTS / "collectors-engineer.png"))


def test_plant_manager_may_not_open_collectors(browser, server):
    browser_login(browser, server.url, "anna")
    browser.get(server.url + "collectors")
    wait_for(lambda: "Not available for your role" in browser.page_source, "the refusal")
