"""Fixtures for the dashboard tests: a temporary SQLite store, a users file with one user per role, and for the browser
tests an analysed plant, the dashboard serving it and headless Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.storage.sqlite import SQLiteStore
from dashboard.tests.helpers import make_users


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "plant.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def users_path(tmp_path_factory):
    """A users file (mode 0600) with the users of helpers.TEST_USERS, made once (hashing is slow on purpose)."""
    path = tmp_path_factory.mktemp("users") / "users.json"
    make_users(path)
    return path


# -- An analysed plant served by the dashboard, and headless Chromium: made once per run, shared by the browser modules
# (pages, enterprise, materials, collectors, exports); three CLI runs and a Chromium start each, so not once per module.
_REPO = Path(__file__).resolve().parents[2]
_ORDER_RULES = _REPO / "core" / "orders" / "sample.yaml"


def _wattline(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="session")
def analysed(tmp_path_factory):
    """(store path, report): two weeks of 12 machines of the demo plant's north site, analysed, with work orders.

    Tests may change the orders (a plant manager acknowledges one); the others compute what they expect from the
    orders database as it is when they run."""
    folder = tmp_path_factory.mktemp("analysed")
    _wattline("simulate", "backfill", "--days", "14", "--machines", "12", "--resolution", "300", "--store", "plant.db",
              "--quiet", cwd=folder)
    _wattline("analyze", "--store", "plant.db", "--json", "report.json", "--quiet", cwd=folder)
    # Work orders from the findings, routed by the sample rules, in the default database beside the store.
    _wattline("orders", "sync", "--store", "plant.db", "--rules", str(_ORDER_RULES), "--json", cwd=folder)
    return folder / "plant.db", json.loads((folder / "report.json").read_text())


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Chromium at 1400 x 1000 (a test that resizes it sets it back); each test logs in as its user."""
    from tests.support import start_chromium

    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), 40)
    driver.set_window_size(1400, 1000)
    (_REPO / "test-artifacts" / "screenshots").mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def server(analysed, users_path):
    """The dashboard (in this process, a free port) on the analysed plant."""
    from dashboard.app import create_app
    from dashboard.serve import DashboardServer
    from simulator.plant import DEFAULT_PLANT_FILE

    # The orders database is found as 'wattline orders' finds it (beside the store); the rules give the teams.
    app = create_app(str(analysed[0]), users=users_path, plant=DEFAULT_PLANT_FILE, orders_rules=_ORDER_RULES)
    server = DashboardServer(app, "127.0.0.1", 0).start()
    yield server
    server.stop()
