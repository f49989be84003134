"""Helpers shared by test modules across the tree."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def in_ci() -> bool:
    """True when running under CI (``CI`` set to 1/true/yes, as ``.ci/run`` does): the one place that decides."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip a test whose server or browser is missing on a developer machine; fail it in CI.

    ``.ci/run`` installs and starts every server the tests need, so in CI (``CI=true``) a missing one is a broken CI
    script, never a reason to skip.
    """
    if in_ci():
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


def _wait_message(what: str, timeout: float, last) -> str:
    return f"timed out after {timeout:.1f} s waiting for {what}; last seen: {last!r}"


def wait_for(condition, timeout: float = 30.0, what: str = "the condition", interval: float = 0.05, *,
             fail: bool = True):
    """Poll ``condition()`` until it returns something truthy; the one way tests wait (never a bare sleep).

    Parameters
    ----------
    condition : callable
        Returns a truthy value when the wait is over; an exception counts as "not yet" (a server still starting).
    timeout : float
        Longest wait [s]; generous, so that a loaded CI machine does not flake.
    what : str
        What is awaited, for the failure message.
    interval : float
        Pause between polls [s].
    fail : bool
        True: fail the test at the timeout, naming ``what`` and the last value seen. False: return that value.

    Returns
    -------
    object
        The truthy value ``condition()`` returned (or, with ``fail=False``, the last value).
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        done, last = _poll(condition)
        if done or time.monotonic() >= deadline:
            return _outcome(done, last, what, timeout, fail)
        time.sleep(interval)


def _poll(condition) -> tuple[bool, object]:
    """One look at ``condition()``: whether the wait is over, and what it returned (an exception counts as "not yet")."""
    try:
        last = condition()
    except Exception as exc:  # noqa: BLE001 - not ready yet
        return False, exc
    return bool(last), last


def _outcome(done: bool, last, what: str, timeout: float, fail: bool):
    """What a wait returns: the truthy value; at the timeout, a failed test (``fail``) or the last value seen."""
    if done:
        return last
    if fail:
        pytest.fail(_wait_message(what, timeout, last))
    return None if isinstance(last, Exception) else last


async def wait_for_async(condition, timeout: float = 30.0, what: str = "the condition", interval: float = 0.05, *,
                         fail: bool = True):
    """:func:`wait_for` inside an event loop: polls with ``asyncio.sleep`` so that the loop keeps running."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        done, last = _poll(condition)
        if done or time.monotonic() >= deadline:
            return _outcome(done, last, what, timeout, fail)
        await asyncio.sleep(interval)
