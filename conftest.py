"""The test tiers, decided in one place (every test folder is under this file).

- **unit tier**, ``python -m pytest -m "not integration"``: no real server, browser or ``wattline`` child process;
  its goal is under 2 minutes on the 2-core CI machine (issue 9; not met yet: the figures are in docs/benchmarks.md).
- **default suite**, README.md's ``python -m pytest``: everything but the ``benchmark`` and ``slow`` markers (addopts in
  pyproject.toml); covers every feature at least once.
- **slow tier**, ``python -m pytest -m slow``: the scale and soak tests whose point is volume or long outages; ``.ci/run``
  runs it right after the default suite, so CI runs every test.

A test that starts an OPC UA server, a ``wattline`` process (collector, CLI), InfluxDB, PostgreSQL or Chromium carries
the ``integration`` marker: explicitly (``pytestmark`` of its module), or here from the server fixtures it uses
(:data:`SERVER_FIXTURES`) or the folder it lives in (:data:`INTEGRATION_FOLDERS`). As a guard, an asyncua server or a
``wattline`` child process started by a test without the marker fails that test
(:func:`_unit_tests_start_no_opcua_server`).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

#: Fixture -> the markers besides ``integration`` that a test using it (directly or through other fixtures) gets.
SERVER_FIXTURES: dict[str, tuple[str, ...]] = {
    "influx_env": ("influx",),  # the shared InfluxDB server (tests/storage/conftest.py)
    "private_influxd": ("influx",),  # a second influxd the test starts
    "pg_url": (),  # a database on the PostgreSQL cluster (tests/orders/conftest.py)
    "browser": ("browser",),  # headless Chromium (tests/e2e/conftest.py)
}
#: Folders whose every test runs ``wattline`` as a child process (end to end through the command line).
INTEGRATION_FOLDERS = ("tests/e2e/",)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects on the markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        wanted: set[str] = set()
        try:
            rel = Path(item.path).resolve().relative_to(ROOT).as_posix()
        except ValueError:
            rel = ""
        if rel.startswith(INTEGRATION_FOLDERS):
            wanted.add("integration")
        for name in SERVER_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            wanted |= {"integration", *SERVER_FIXTURES[name]}
        have = {mark.name for mark in item.iter_markers()}
        for name in sorted(wanted - have):
            item.add_marker(name)


def runs_wattline(args) -> bool:
    """True when a child process's ``args`` run the ``wattline`` command (``wattline ...`` or ``python -m wattline``)."""
    argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else str(args).split()
    if argv and Path(argv[0]).name == "wattline":
        return True
    return any(a == "-m" and b == "wattline" for a, b in itertools.pairwise(argv))


@pytest.fixture(autouse=True)
def _unit_tests_start_no_opcua_server(request, monkeypatch):
    """Fail a test without the ``integration`` marker that starts an asyncua server or a ``wattline`` child process
    (it belongs to that tier)."""
    if request.node.get_closest_marker("integration") is not None:
        return
    import subprocess

    import asyncua

    async def refuse(self, *args, **kwargs):
        pytest.fail(f"{request.node.nodeid} starts an OPC UA server: mark it integration (see conftest.py)")

    class UnitPopen(subprocess.Popen):
        def __new__(cls, args, *rest, **kwargs):
            if runs_wattline(args):
                pytest.fail(f"{request.node.nodeid} runs wattline in a child process: mark it integration "
                            "(see conftest.py)")
            return super().__new__(cls)

    monkeypatch.setattr(asyncua.Server, "start", refuse)
    monkeypatch.setattr(subprocess, "Popen", UnitPopen)
