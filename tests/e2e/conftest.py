"""Fixtures for end-to-end tests: free ports and a headless Chromium."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support import start_chromium

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven by selenium, with the flags this closed network needs."""
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), 30)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
