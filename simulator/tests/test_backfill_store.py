"""Backfill into the embedded store: the stored history sums to the manifest; the bulk write path is exact."""

import datetime as dt
import json
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from core.errors import ConfigError
from core.model import SeriesKey
from core.storage import open_store
from simulator.backfill import backfill
from simulator.scenario import read_scenario
from simulator.tests.conftest import MONDAY
from simulator.timeline import day_date
from wattline.cli_simulate import simulate_app


@pytest.fixture(scope="module")
def filled(tmp_path_factory, small_plant):
    path = tmp_path_factory.mktemp("bf") / "plant.db"
    store = open_store(str(path))
    result = backfill(store, small_plant, 3, read_scenario(), seed=1, start=day_date(MONDAY), resolution_s=60.0,
                      truth_path=path.with_suffix(".truth.json"), progress=False, intensity=1.5)
    yield store, result
    store.close()


def test_stored_power_sums_to_the_manifest_total(filled, small_plant):
    store, result = filled
    start, stop = dt.datetime.combine(day_date(MONDAY), dt.time(), dt.UTC), None
    stop = start + dt.timedelta(days=3, minutes=1)
    hourly = store.query("electrical", "active_power_kw", start, stop, window_s=60, agg="sum")
    stored_kwh = hourly["value"].sum() / 60
    total = result.manifest["plant_energy_kwh"]
    assert stored_kwh == pytest.approx(total, rel=0.005)
    assert result.values > 3 * 1440 * len(small_plant) * 4


def test_stored_registers_sum_to_the_manifest_total(filled, small_plant):
    """Energy from the meter registers, handling rollover and resets the way an analyst would."""
    store, result = filled
    start = dt.datetime.combine(day_date(MONDAY), dt.time(), dt.UTC)
    frame = store.query("electrical", "energy_kwh", start, start + dt.timedelta(days=3, minutes=1))
    total = 0.0
    for machine, rows in frame.groupby("machine"):
        reg = rows["value"].dropna().to_numpy()
        d = np.diff(reg)
        rollover = small_plant.machine(machine).spec.register_max_kwh
        d = np.where(d < -rollover / 2, d + rollover, d)  # rollover
        d = np.where(d < 0, 0.0, d)  # reset: the reading restarted near zero
        total += d.sum()
    # The first interval of the run is before the first reading; it is a minute of a few hundred kW at most.
    assert total == pytest.approx(result.manifest["plant_energy_kwh"], rel=0.005)


def test_backfill_writes_catalogue_series_and_truth(filled):
    store, result = filled
    names = {(s.key.measurement, s.key.field) for s in store.series()}
    assert {("electrical", "active_power_kw"), ("electrical", "energy_kwh"), ("machine_state", "state"),
            ("production", "good_count"), ("material", "consumed_kg"), ("compressed_air", "flow_m3_min"),
            ("compressed_air", "pressure_bar"), ("weather", "outdoor_temp_c")} <= names
    materials = {s.key.tag_dict["material"] for s in store.series("material")}
    assert len(materials) > 10 and all(m.startswith("MAT-") for m in materials)
    truth = json.loads(result.truth_path.read_text())
    assert truth["plant_energy_kwh"] == pytest.approx(result.manifest["plant_energy_kwh"])


def _rollups(path):
    """Every rollup bucket as queries see it (coarse buckets kept lazily included), sorted."""
    from core.storage.sqlite import _MAX_NS, _MIN_NS, _rollup_source_sql

    conn = sqlite3.connect(path)
    ids = json.dumps([r[0] for r in conn.execute("SELECT id FROM series")])
    rows = []
    for res in (60, 900, 3600):
        rows += [(res, *r) for r in conn.execute(
            f"SELECT series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast FROM {_rollup_source_sql(res)}",
            {"ids": ids, "lo": _MIN_NS, "hi": _MAX_NS})]
    conn.close()
    return sorted(rows, key=lambda r: r[:3])


def test_bulk_write_matches_the_sql_rollup_path(tmp_path):
    """write_arrays' numpy rollups equal the rollups the store recomputes in SQL from the raw points."""
    rng = np.random.default_rng(0)
    t0 = 1_767_225_600 * 10**9
    times = t0 + np.sort(rng.choice(np.arange(0, 20000) * 7 * 10**9, 3000, replace=False))
    times = np.concatenate([times, times[:50]])  # duplicates: the later value wins
    values = rng.normal(10, 3, len(times))
    values[rng.random(len(times)) < 0.05] = np.nan
    status = np.where(np.isnan(values), 0x80310000, 0)
    key = SeriesKey.of("electrical", {"machine": "m"}, "active_power_kw")
    a = open_store(str(tmp_path / "a.db"))
    a.write_arrays(key, times, values, status)
    a.close()
    b = open_store(str(tmp_path / "b.db"))
    conn = b._conn()
    conn.execute("BEGIN")
    sid = b._series_id(conn, key)
    keep = {}
    for t, v, s in zip(times.tolist(), values.tolist(), status.tolist()):
        keep[t] = (v, s)
    kept = list(keep.items())
    b._write_columns(  # the general (row) path of write() and write_batch()
        conn, np.full(len(kept), sid, dtype=np.int64), np.array([t for t, _ in kept], dtype=np.int64),
        np.array([v for _, (v, _s) in kept], dtype=float), np.array([s for _, (_v, s) in kept], dtype=np.int64))
    conn.execute("COMMIT")
    b.close()
    ra, rb = _rollups(tmp_path / "a.db"), _rollups(tmp_path / "b.db")
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        assert x[:5] == y[:5] and x[8] == y[8]
        for u, v in zip(x[5:], y[5:]):
            assert (u is None and v is None) or u == pytest.approx(v, rel=1e-12, abs=1e-9)
    a = open_store(str(tmp_path / "a.db"))
    raw = a.query("electrical", "active_power_kw", int(times.min()), int(times.max()) + 1)
    assert len(raw) == len(keep)
    assert raw["value"].isna().sum() == sum(1 for v, _ in keep.values() if np.isnan(v))
    assert set(raw.loc[raw["value"].isna(), "status"]) == {0x80310000}
    # A second, overlapping write takes the exact SQL path and replaces values.
    a.write_arrays(key, times[:10], np.full(10, 99.0))
    again = a.query("electrical", "active_power_kw", int(times[0]), int(times[10]), window_s=3600, agg="max")
    assert again["value"].max() == 99.0
    a.close()


def test_cli_backfill_and_bad_options(tmp_path):
    runner = CliRunner()
    db = tmp_path / "cli.db"
    r = runner.invoke(simulate_app, ["backfill", "--days", "1", "--machines", "4", "--store", str(db), "--start",
                                     "2026-03-02", "--quiet", "--seed", "2"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["values"] > 0 and (tmp_path / "cli.db.truth.json").exists()
    r = runner.invoke(simulate_app, ["backfill", "--days", "1", "--resolution", "7", "--store", str(db)])
    assert isinstance(r.exception, ConfigError) and "must divide a day" in str(r.exception)
    r = runner.invoke(simulate_app, ["backfill", "--days", "1", "--start", "March", "--store", str(db)])
    assert isinstance(r.exception, ConfigError) and "YYYY-MM-DD" in str(r.exception)
