"""Helpers shared by test modules across the tree."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def unavailable(reason: str) -> None:
    """Skip a test whose server or browser is missing on a developer machine; fail it in CI.

    ``.ci/run`` installs and starts every server the tests need, so in CI (``CI=true``) a missing one is a broken CI
    script, never a reason to skip.
    """
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} — .ci/run must provide it")
    pytest.skip(reason)


def require_chromium() -> None:
    """Skip (locally) or fail (CI) unless Debian's chromium and chromium-driver are installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        unavailable(f"{', '.join(missing)} not installed: apt-get install chromium chromium-driver")


def start_chromium(profile_dir, page_load_timeout_s: float = 30.0):
    """Start headless Chromium through selenium with the flags this closed network needs; the caller quits it.

    Without the background-networking flags Chromium keeps trying to reach Google's hosts, which this machine refuses.
    """
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1440,1100",
                 f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(page_load_timeout_s)
    return driver
