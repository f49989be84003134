"""Fixtures for the work-order tests: the same tests run on SQLite and on PostgreSQL.

PostgreSQL is the throwaway cluster ``deploy/postgres/start.sh`` started (``.ci/run`` does); its env file is found
through ``WATTLINE_PG_ENV_FILE`` or at start.sh's default place. Each test gets a database of its own, dropped after.
Without a server the PostgreSQL cases are skipped on a developer machine and fail in CI (tests/support.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support import unavailable

UTC = dt.UTC


def pg_env_file() -> Path:
    explicit = os.environ.get("WATTLINE_PG_ENV_FILE")
    if explicit:
        return Path(explicit)
    run_dir = os.environ.get("WATTLINE_PG_RUN_DIR") or os.path.join(
        os.environ.get("TMPDIR", tempfile.gettempdir()), f"wattline-postgres-{os.getuid()}")
    return Path(run_dir) / "postgres.env"


def pg_admin_url() -> str:
    """URL of the running cluster's ``wattline`` database; skip (locally) or fail (CI) without it."""
    path = pg_env_file()
    if not path.exists():
        unavailable(f"no PostgreSQL env file at {path}: run deploy/postgres/start.sh first")
    env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    url = env["WATTLINE_PG_URL"]
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        unavailable(f"PostgreSQL from {path} does not answer: {exc}")
    return url


@contextlib.contextmanager
def fresh_pg_database():
    """Yield the URL of a fresh, empty PostgreSQL database, dropped on leaving (for fixtures of any scope)."""
    import sqlalchemy as sa

    admin = pg_admin_url()
    name = f"wl_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    base = sa.engine.make_url(admin)
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_url(request, tmp_path):
    """The URL of an empty work-order database, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orders.db'}"
    return request.getfixturevalue("pg_url")


class Clock:
    """A settable clock for the service (orders open, age and come due on it)."""

    def __init__(self, start: dt.datetime) -> None:
        self.t = start

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, **kw) -> None:
        self.t += dt.timedelta(**kw)


@pytest.fixture
def clock():
    return Clock(dt.datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
