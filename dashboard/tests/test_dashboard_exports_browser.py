"""The Parquet download links in headless Chromium: each follows its CSV link's site and period as the page's
callbacks set them (a clientside twin), and what it points at is the Parquet of the CSV's rows."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from core.plant import parse_plant
from dashboard import ids
from dashboard.tests.helpers import browser_login
from dashboard.tests.test_api_v1 import PLANT
from dashboard.tests.test_dashboard_exports import make_store, same_table
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture
def server(tmp_path, users_path):
    from dashboard.app import create_app
    from dashboard.serve import DashboardServer

    make_store(tmp_path / "plant.db")
    app = create_app(str(tmp_path / "plant.db"), users=users_path, plant=parse_plant(PLANT, "<plant>"), tz="UTC")
    server = DashboardServer(app, "127.0.0.1", 0).start()
    yield server
    server.stop()


def href(driver, element_id: str) -> str:
    found = driver.find_elements("id", element_id)
    return found[0].get_attribute("href") or "" if found else ""


@pytest.mark.parametrize(("page", "csv_id", "parquet_id"), [
    ("collectors", ids.COL_QUALITY_EXPORT, ids.COL_QUALITY_EXPORT_PARQUET),
    ("collectors", ids.COL_EXPORT, ids.COL_EXPORT_PARQUET),
    ("materials", ids.MAT_EXPORT, ids.MAT_EXPORT_PARQUET),
    ("enterprise", ids.ENT_EXPORT, ids.ENT_EXPORT_PARQUET),
    ("findings", ids.FINDINGS_EXPORT, ids.FINDINGS_EXPORT_PARQUET),
])
def test_parquet_links_follow_the_csv_links(browser, server, page, csv_id, parquet_id):
    browser_login(browser, server.url, "carla" if page == "enterprise" else "erik")  # the CDO; an engineer of north
    browser.get(server.url + page)
    csv = wait_for(lambda: href(browser, csv_id) if "period=" in href(browser, csv_id) else None,
                   what=f"the {page} page's CSV link with site and period", timeout=40)
    parquet = wait_for(lambda: href(browser, parquet_id) if "period=" in href(browser, parquet_id) else None,
                       what="the Parquet link following it", timeout=40)
    assert parquet == csv.replace(".csv?", ".parquet?")
    # the browser's session fetches both: the same rows
    fetch = "return fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => Array.from(new Uint8Array(b)));"
    csv_bytes = bytes(browser.execute_script(fetch, csv))
    parquet_bytes = bytes(browser.execute_script(fetch, parquet))
    assert parquet_bytes[:4] == b"PAR1"
    same_table(pd.read_csv(io.BytesIO(csv_bytes)), pd.read_parquet(io.BytesIO(parquet_bytes)))
