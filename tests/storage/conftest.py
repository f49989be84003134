"""Fixtures for the storage contract: one store per test, SQLite always, InfluxDB against the real server.

The InfluxDB server is the one ``deploy/influxdb/start.sh`` started; its env file is found through
``WATTLINE_INFLUX_ENV_FILE`` or at start.sh's default place. Without a server the InfluxDB cases are skipped on a
developer machine and FAIL in CI (``CI=true``): a skipped test must never stand in for a missing server there.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from core.storage.influx import InfluxSettings, InfluxStore, read_env_file, remove_influx, setup_influx
from core.storage.process import ProcessStore
from core.storage.sqlite import SQLiteStore
from tests.support import unavailable

REPO = Path(__file__).resolve().parents[2]
INFLUX_DEPLOY = REPO / "deploy" / "influxdb"


def influx_sh(script: str, *args: str) -> str:
    """Run one of deploy/influxdb's scripts (start.sh, stop.sh); a failure is an assertion with its stderr."""
    res = subprocess.run(["bash", str(INFLUX_DEPLOY / script), *args], capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


@pytest.fixture
def private_influxd(influx_env, tmp_path):
    """A second influxd (the cached binary) in its own run dir, which the test may stop and restart (the shared
    server stays untouched); yields (run dir, its env)."""
    run_dir = tmp_path / "influx-run"
    influx_sh("start.sh", str(run_dir))
    try:
        yield run_dir, read_env_file(run_dir / "influx.env")
    finally:
        influx_sh("stop.sh", str(run_dir), "--purge")


def influx_env_file() -> Path:
    """Where start.sh wrote its env file."""
    explicit = os.environ.get("WATTLINE_INFLUX_ENV_FILE")
    if explicit:
        return Path(explicit)
    run_dir = os.environ.get("WATTLINE_INFLUX_RUN_DIR") or os.path.join(
        os.environ.get("TMPDIR", tempfile.gettempdir()), f"wattline-influxdb-{os.getuid()}"
    )
    return Path(run_dir) / "influx.env"


def _server_problem(env: dict[str, str]) -> str | None:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(env["WATTLINE_INFLUX_URL"] + "/health", timeout=5) as r:
            if json.load(r).get("status") == "pass":
                return None
            return "InfluxDB /health is not 'pass'"
    except Exception as exc:  # noqa: BLE001
        return f"InfluxDB at {env.get('WATTLINE_INFLUX_URL')} does not answer: {exc}"


@pytest.fixture(scope="session")
def influx_env() -> dict[str, str]:
    """The running server's URL, org, bucket and token file; skip (locally) or fail (CI) without it."""
    path = influx_env_file()
    problem = None
    env: dict[str, str] = {}
    if not path.exists():
        problem = f"no InfluxDB env file at {path}: run deploy/influxdb/start.sh first"
    else:
        env = read_env_file(path)
        problem = _server_problem(env)
    if problem:
        unavailable(f"{problem} (CI must run the InfluxDB tests against a real server)")
    return env


def influx_settings(env: dict[str, str], bucket: str, tmp: Path, **extra) -> InfluxSettings:
    """Settings for a private bucket on the shared test server."""
    return InfluxSettings(
        url=env["WATTLINE_INFLUX_URL"],
        org=env["WATTLINE_INFLUX_ORG"],
        bucket=bucket,
        token_file=env["WATTLINE_INFLUX_TOKEN_FILE"],
        spool_dir=tmp / "spool",
        flush_interval_ms=200,
        **extra,
    )


def drop_bucket(settings: InfluxSettings) -> None:
    """Delete a test bucket, its rollup buckets and tasks (the server is shared by the whole run)."""
    remove_influx(settings)


@pytest.fixture
def influx_settings_for(influx_env, tmp_path):
    """Factory: settings for a private bucket on the shared server (caller removes it with drop_bucket)."""
    return lambda bucket, **extra: influx_settings(influx_env, bucket, tmp_path, **extra)


@pytest.fixture
def influx_drop():
    """The clean-up function for buckets made with ``influx_settings_for``."""
    return drop_bucket


@pytest.fixture
def influx_store(request, influx_env, tmp_path):
    """An InfluxStore on a fresh bucket with rollup buckets and tasks (setup_influx), removed afterwards."""
    settings = influx_settings(influx_env, f"t_{uuid.uuid4().hex[:10]}", tmp_path)
    setup_influx(settings, backfill=False, progress=False)
    store = InfluxStore(settings)
    try:
        yield store
    finally:
        store.close()
        drop_bucket(settings)


@pytest.fixture(params=["sqlite", pytest.param("sqlite-process", marks=pytest.mark.integration),  # a writer process
                        pytest.param("influx", marks=[pytest.mark.integration, pytest.mark.influx])])
def store(request, tmp_path):
    """Each contract case runs once per backend, and once through a ProcessStore (the collectors' writer process)."""
    if request.param in ("sqlite", "sqlite-process"):
        path = tmp_path / "contract.db"
        s = SQLiteStore(path) if request.param == "sqlite" else ProcessStore(f"sqlite:///{path.resolve()}")
        try:
            yield s
        finally:
            s.close()
    else:
        yield request.getfixturevalue("influx_store")
