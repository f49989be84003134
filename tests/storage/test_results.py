"""Contract of the result store (findings and model outputs per run) on every backend: SQLite, SQLite behind the
writer process, InfluxDB (fixtures in conftest.py)."""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pandas as pd
import pytest

from core.errors import StoreError
from core.model import Event
from core.storage.results import results_for

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = dt.timedelta(hours=1)


def finding(machine: str, kind: str, start_h: float, hours: float, kwh: float, **details) -> Event:
    start = T0 + start_h * H
    return Event(machine, kind, start, start + hours * H, kwh, details)


def sample() -> list[Event]:
    return [
        finding("north/L1/cnc-01", "idle_running", 0, 2, 12.5, cost=3.75, co2_kg=5.0, severity=0.4,
                explanation="Idle for 2 h during the shift", idle_kw=6.25, shift="early"),
        finding("north/L1/cnc-02", "off_shift_load", 1, 8, 40.0, cost=12.0, explanation="Left on over night"),
        finding("north/L2/comp-1", "air_leak", 3, 1.5, 7.25, severity=0.9, leak_m3_min=1.2,
                nested={"points": [1, 2, 3], "ok": True}),
        finding("meter-7", "meter_stuck", 0.5, 0.25, 0.0),  # a bare machine tag, no path
    ]


@pytest.fixture
def results(store):
    rs = results_for(store)
    try:
        yield rs
    finally:
        rs.close()


def test_findings_round_trip_with_details(results):
    events = sample()
    assert results.write_findings("run-a", events, run_kind="waste") == len(events)
    got = results.query_findings()
    assert got == sorted(events, key=lambda e: (e.start, e.machine, e.kind, e.end))
    cnc = next(e for e in got if e.machine == "north/L1/cnc-01")
    assert cnc.details == {"cost": 3.75, "co2_kg": 5.0, "severity": 0.4, "explanation": "Idle for 2 h during the shift",
                           "idle_kw": 6.25, "shift": "early"}
    # the JSON form (what the API returns) goes in too
    assert results.write_findings("run-b", [e.to_dict() for e in events[:2]]) == 2
    assert results.query_findings(run="run-b") == sorted(events[:2], key=lambda e: e.start)
    runs = {r.run: r for r in results.runs()}
    assert set(runs) == {"run-a", "run-b"}
    assert (runs["run-a"].kind, runs["run-a"].findings, runs["run-b"].findings) == ("waste", 4, 2)
    assert runs["run-a"].created.tzinfo is not None


def test_replace_by_run_keeps_other_runs(results):
    events = sample()
    results.write_findings("run-a", events)
    results.write_findings("run-b", events[:1])
    results.write_findings("run-a", events[2:3])  # replace: run-a now holds one finding
    assert results.query_findings(run="run-a") == events[2:3]
    assert results.query_findings(run="run-b") == events[:1]
    results.write_findings("run-a", events[3:], replace=False)  # add
    assert results.query_findings(run="run-a") == sorted([events[2], events[3]], key=lambda e: e.start)
    assert len(results.query_findings()) == 3


def test_delete_run(results):
    events = sample()
    results.write_findings("run-a", events)
    results.write_findings("run-b", events[1:2])
    results.delete_run("run-a")
    assert results.query_findings() == events[1:2]
    assert [r.run for r in results.runs()] == ["run-b"]
    results.delete_run("no-such-run")  # nothing to do is not an error
    assert [r.run for r in results.runs()] == ["run-b"]


def test_range_kind_and_machine_filters(results):
    events = sample()
    results.write_findings("run-a", events)
    # cnc-01 [8:00, 10:00), cnc-02 [9:00, 17:00), comp-1 [11:00, 12:30), meter-7 [8:30, 8:45)
    assert {e.machine for e in results.query_findings(T0 + 1.5 * H, T0 + 3 * H)} == {"north/L1/cnc-01",
                                                                                       "north/L1/cnc-02"}
    assert results.query_findings(T0 + 2 * H, T0 + 3 * H) == [events[1]]  # cnc-01 ended at 10:00: not overlapping
    assert results.query_findings(stop=T0) == []  # cnc-01 starts at the range's stop: outside [start, stop)
    assert {e.machine for e in results.query_findings(start=T0 + 6 * H)} == {"north/L1/cnc-02"}
    assert results.query_findings(kinds=["air_leak", "meter_stuck"]) == [events[3], events[2]]
    assert results.query_findings(machines=["cnc-02"]) == [events[1]]
    assert results.query_findings(machines=["north/L2/comp-1", "meter-7"]) == [events[3], events[2]]
    assert results.query_findings(start=T0.isoformat(), stop=(T0 + H).isoformat(), kinds=["idle_running"]) \
        == [events[0]]


def test_unicode_explanation(results):
    text = 'Leerlauf über Nacht — 3 kW ≈ 72 kWh; 夜間の待機電力, "quoted", back\\slash, a=b c\nsecond line'
    event = finding("süd/Linie 1/Presse=2", "idle_running", 0, 1, 3.0, explanation=text, note="ünïcode ✓")
    results.write_findings("run-u", [event])
    (got,) = results.query_findings()
    assert got == event
    assert got.details["explanation"] == text


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"machine": "m", "kind": "idle_runing", "start": "2026-03-02T08:00:00+00:00",
          "end": "2026-03-02T09:00:00+00:00", "excess_kwh": 1.0}, "idle_runing"),
        ({"machine": "m", "kind": "idle_running", "start": "2026-03-02T08:00:00",
          "end": "2026-03-02T09:00:00+00:00", "excess_kwh": 1.0}, "2026-03-02T08:00:00"),
        ({"machine": "m", "kind": "idle_running", "start": "2026-03-02T08:00:00+00:00",
          "end": "2026-03-02T09:00:00+00:00", "excess_kwh": 1.0, "details": {"cost": "a lot"}}, "a lot"),
        ({"machine": "m", "kind": "idle_running", "start": "2026-03-02T08:00:00+00:00",
          "end": "2026-03-02T09:00:00+00:00", "excess_kwh": 1.0, "details": {"when": dt.date(2026, 3, 2)}},
         "not JSON"),
    ],
)
def test_bad_findings_raise_naming_the_value_and_write_nothing(results, bad, named):
    good = sample()[0]
    with pytest.raises(StoreError, match=named):
        results.write_findings("run-a", [good, bad])
    assert results.query_findings() == []


def test_bad_queries_and_ids_raise_naming_the_value(results):
    with pytest.raises(StoreError, match="idle_runing"):
        results.query_findings(kinds=["idle_runing"])
    with pytest.raises(StoreError, match="2026-03-02T08:00:00"):
        results.query_findings(start=dt.datetime(2026, 3, 2, 8))
    with pytest.raises(StoreError, match="run id 'a b'"):
        results.write_findings("a b", sample())
    with pytest.raises(StoreError, match='run id \'x"y\''):
        results.delete_run('x"y')
    with pytest.raises(StoreError, match="Baseline"):
        results.write_outputs("run-a", "Baseline", pd.DataFrame({"time": [T0], "v": [1.0]}))
    with pytest.raises(StoreError, match="naive"):
        results.write_outputs("run-a", "baseline", pd.DataFrame({"time": [pd.Timestamp("2026-03-02 08:00")],
                                                                 "v": [1.0]}))


def baseline_frame(machines: list[str], offset: float) -> pd.DataFrame:
    times = pd.date_range(T0, periods=8, freq="15min", tz="UTC")
    parts = [pd.DataFrame({"time": times, "machine": m, "expected_kwh": np.arange(8) * 0.5 + i + offset,
                           "upper_kwh": np.arange(8) * 0.5 + i + offset + 1.0})
             for i, m in enumerate(machines)]
    return pd.concat(parts, ignore_index=True)


def test_outputs_as_series_beside_the_measurements(store, results):
    first = baseline_frame(["cnc-01", "cnc-02"], 0.0)
    assert results.write_outputs("base-1", "baseline", first, run_kind="baseline") == 2 * 8 * 2
    other = baseline_frame(["cnc-01"], 100.0)
    results.write_outputs("base-2", "baseline", other, run_kind="baseline")
    got = results.read_outputs("baseline", run="base-1")
    assert list(got.columns) == ["time", "run", "machine", "expected_kwh", "upper_kwh"]
    pd.testing.assert_frame_equal(got.drop(columns="run"), first.sort_values(["machine", "time"]).reset_index(drop=True),
                                  check_dtype=False)
    # The newest run answers by default; machine and range filters.
    newest = results.read_outputs("baseline", start=T0 + H, machines=["cnc-01"])
    assert set(newest["run"]) == {"base-2"} and len(newest) == 4
    assert newest["expected_kwh"].tolist() == other["expected_kwh"].tolist()[4:]
    # The store reads them like any series: what a Grafana panel or the dashboard does.
    hourly = store.query("wattline_baseline", "expected_kwh", T0, T0 + 2 * H, tags={"run": "base-1", "machine": "cnc-02"},
                         window_s=3600, agg="sum")
    assert hourly["value"].tolist() == pytest.approx([first["expected_kwh"][8:12].sum(), first["expected_kwh"][12:].sum()])
    # Replace keeps other runs; delete removes the values and the record.
    results.write_outputs("base-1", "baseline", baseline_frame(["cnc-03"], 7.0))
    assert set(results.read_outputs("baseline", run="base-1")["machine"]) == {"cnc-03"}
    assert len(results.read_outputs("baseline", run="base-2")) == 8
    runs = {r.run: r for r in results.runs()}
    assert runs["base-1"].outputs == {"baseline": 16} and runs["base-2"].outputs == {"baseline": 16}
    results.delete_run("base-1")
    assert results.read_outputs("baseline", run="base-1").empty
    assert store.query("wattline_baseline", "expected_kwh", T0, T0 + 2 * H, tags={"run": "base-1"}).empty
    assert [r.run for r in results.runs()] == ["base-2"]
    assert len(results.read_outputs("baseline")) == 8


def test_an_older_file_gains_the_result_tables(tmp_path):
    from core.storage.sqlite import SQLiteStore

    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        layout = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert "findings" not in tables
    store = SQLiteStore(path)
    with results_for(store) as results:
        results.write_findings("r1", sample()[:1])
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == layout
        assert conn.execute("SELECT value FROM meta WHERE key = 'results_version'").fetchone() == ("1",)
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'results_version'")
    store = SQLiteStore(path)
    try:
        with pytest.raises(StoreError, match="version 99"):
            results_for(store)
    finally:
        store.close()


def test_findings_are_records_not_series(store, results):
    import time

    from core.storage.influx import InfluxStore

    now = dt.datetime.now(UTC).replace(microsecond=0)
    recent = [Event("north/L1/cnc-01", "idle_running", now - 2 * H, now - H, 1.0, {"explanation": "text, not a number"})]
    results.write_findings("run-a", recent)
    assert all(not s.key.measurement.startswith("wattline_") for s in store.series())
    if isinstance(store, InfluxStore):
        # Rollups are recomputed over the findings' hours without tripping over their text fields.
        store.refresh_rollups(time.time_ns() - 3 * H.seconds * 1_000_000_000, time.time_ns())
        flux = (f'from(bucket: "{store.settings.bucket}_1m") |> range(start: -1d) '
                '|> filter(fn: (r) => r._measurement == "wattline_findings")')
        assert store._table(flux).empty
    assert results.query_findings() == recent
