"""Every table download as CSV and as Parquet: the same rows and columns in both, types kept in Parquet, and the same
gate (login, role, site) for both (real SQLite store with two sites and an analysis run's findings)."""

from __future__ import annotations

import datetime as dt
import io
import time

import numpy as np
import pandas as pd
import pytest

from core.model import Event
from core.plant import parse_plant
from core.storage.results import results_for
from core.storage.sqlite import SQLiteStore
from dashboard.tests.helpers import logged_in, machine_tags, write_field
from dashboard.tests.test_api_v1 import PLANT, POWER_KW

TABLES = ("findings", "collectors", "quality", "materials", "enterprise", "top-machines", "series")


def make_store(path) -> None:
    """Two days of three machines in two sites up to the last whole hour, and an analysis run's findings."""
    end_s = int(time.time()) // 3600 * 3600
    times = np.arange(end_s - 2 * 86400, end_s + 1, 300, dtype=np.int64)
    with SQLiteStore(path) as st:
        for (site, line, machine), kw in POWER_KW.items():
            tags = machine_tags(line, machine, site=site)
            write_field(st, "electrical", "energy_kwh", tags, times, 500.0 + kw * (times - times[0]) / 3600)
            write_field(st, "electrical", "active_power_kw", tags, times, np.full(len(times), kw))
        t0 = dt.datetime.fromtimestamp(end_s - 86400, dt.UTC)
        with results_for(st) as results:
            results.write_findings("run-1", [
                Event("north/l1/m1", "idle_running", t0, t0 + dt.timedelta(hours=2), 12.5, {"cost": 2.5}),
                Event("south/s1/p1", "off_shift_load", t0, t0 + dt.timedelta(hours=2), 7.0, {"cost": 0.7})])


@pytest.fixture
def app(tmp_path, users_path):
    from dashboard.app import close_store, create_app

    make_store(tmp_path / "plant.db")
    app = create_app(str(tmp_path / "plant.db"), users=users_path, plant=parse_plant(PLANT, "<plant>"), tz="UTC")
    yield app
    close_store(app)


def same_table(csv: pd.DataFrame, parquet: pd.DataFrame) -> None:
    assert list(csv.columns) == list(parquet.columns) and len(csv) == len(parquet)
    for name in parquet.columns:
        if pd.api.types.is_numeric_dtype(parquet[name]) and not pd.api.types.is_bool_dtype(parquet[name]):
            slack = 60.0 if "age" in name else 0.0  # ages are taken at each request's own "now" [s]
            assert np.allclose(csv[name].astype(float), parquet[name].astype(float), atol=slack, equal_nan=True), name
        else:
            def text(column: pd.Series) -> list[str]:
                return ["" if pd.isna(v) else str(v) for v in column]

            if f"{name}_s" in parquet.columns:
                # A human age ("17 min") is its table's own age [s] at its request's "now", which may lie a minute
                # boundary apart from the other request's: each must say its own age_s (compared above, with slack).
                from dashboard.data import format_ages

                for table in (csv, parquet):
                    assert text(table[name]) == format_ages(table[f"{name}_s"].to_numpy(dtype=float)), name
                continue
            assert text(csv[name]) == text(parquet[name]), name


@pytest.mark.parametrize("table", TABLES)
def test_every_table_downloads_as_csv_and_parquet_alike(app, table):
    admin = logged_in(app, "admin")
    query = "?period=7d"
    csv = admin.get(f"/export/{table}.csv{query}")
    parquet = admin.get(f"/export/{table}.parquet{query}")
    assert csv.status_code == parquet.status_code == 200
    assert parquet.mimetype == "application/vnd.apache.parquet" and parquet.data[:4] == b"PAR1"
    assert parquet.headers["Content-Disposition"].endswith(".parquet")
    frame = pd.read_parquet(io.BytesIO(parquet.data))
    same_table(pd.read_csv(io.BytesIO(csv.data)), frame)
    if table in ("findings", "top-machines", "enterprise", "series"):
        assert len(frame) > 0  # data behind it, not just a header
    if table == "enterprise":
        assert frame["energy_kwh"].dtype == np.float64 and frame["site"].iloc[-1] == "All sites"


def test_parquet_downloads_are_gated_like_the_csv(app):
    from dashboard.tests.helpers import client_of

    assert client_of(app).get("/export/findings.parquet").status_code == 401  # no login
    anna = logged_in(app, "anna")  # plant manager of north
    assert anna.get("/export/top-machines.parquet?site=south").status_code == 403
    assert anna.get("/export/series.parquet").status_code == 403  # not a plant manager's page
    mine = pd.read_parquet(io.BytesIO(anna.get("/export/findings.parquet?period=7d").data))
    assert set(mine["site"]) == {"north"}
