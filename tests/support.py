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
