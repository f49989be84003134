"""The Materials page in headless Chromium on history that ``wattline analyze`` analysed (subprocess): the most
intensive material is the analysis's, and the search finds one id among many. Screenshot in test-artifacts."""

from __future__ import annotations

import time

import pytest

from dashboard import ids
from dashboard.tests.helpers import browser_login
from dashboard.tests.test_dashboard_pages_browser import SCREENSHOTS, text_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

FIRST_ROW_JS = """
const rows = document.querySelectorAll('#' + arguments[0] + ' .ag-center-cols-container .ag-row');
const pinned = document.querySelectorAll('#' + arguments[0] + ' .ag-pinned-left-cols-container .ag-row');
return [rows.length, Array.from(pinned).map(r => r.innerText.trim())];
"""


def test_materials_page_shows_the_analysis_intensities(browser, server, analysed):
    report = analysed[1]
    top = report["materials"][0]  # the analysis's most energy-intensive material (this store has one site)
    browser_login(browser, server.url, "anna")
    browser.get(server.url + "materials")
    status = wait_for(lambda: text_of(browser, ids.MAT_STATUS) if "materials" in text_of(browser, ids.MAT_STATUS)
                      and "analysis run" in text_of(browser, ids.MAT_STATUS) else None, "the status line")
    assert "long tail" in status
    shown = wait_for(lambda: (browser.execute_script(FIRST_ROW_JS, ids.MAT_GRID) or [0, []])[1] or None, "grid rows")
    assert shown[0] == top["material"]
    time.sleep(0.8)  # let Plotly finish drawing: for the picture only, no assertion waits on it
    browser.save_screenshot(str(SCREENSHOTS / "materials-plant-manager.png"))
    wanted = report["materials"][-1]["material"]
    browser.find_element("id", ids.MAT_SEARCH).send_keys(wanted)
    found = wait_for(lambda: (lambda r: r if r and len(r) == 1 else None)(
        browser.execute_script(FIRST_ROW_JS, ids.MAT_GRID)[1]), "one row matching the search")
    assert found == [wanted]
