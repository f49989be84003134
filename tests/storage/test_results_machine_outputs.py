"""The ``baseline`` output of ``wattline analyze`` (actual and expected energy and good units per machine and hour)
round-trips through the result store on every backend (SQLite, SQLite behind the writer process, InfluxDB), is
replaced per run, and the machine page reads one machine of one site over its range only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.machine_outputs import COLUMNS
from core.storage.results import results_for
from dashboard.machine_data import daily_kwh_per_unit, read_baseline
from wattline.analyze_outputs import BASELINE, store_baseline, store_output

T0 = pd.Timestamp("2026-03-02 00:00", tz="UTC")


def hours_frame(offset: float = 0.0, hours: int = 48) -> pd.DataFrame:
    t = pd.date_range(T0, periods=hours, freq="h", tz="UTC")
    parts = []
    for site, machine, k in (("north", "cnc-01", 1.0), ("north", "cnc-02", 2.0), ("south", "cnc-01", 50.0)):
        actual = k * (1 + np.arange(hours) % 24) + offset
        actual[5] = np.nan  # an unknown hour
        parts.append(pd.DataFrame({"time": t, "site": site, "line": "l1", "machine": machine, "actual_kwh": actual,
                                   "expected_kwh": actual * 0.9, "good": np.where(np.arange(hours) % 24 >= 6, 10.0, 0.0)
                                   if machine == "cnc-01" else np.nan}))
    frame = pd.concat(parts, ignore_index=True)
    return frame[COLUMNS]


def test_baseline_output_round_trip_replace_and_site_filter(store):
    first = hours_frame()
    with results_for(store) as results:
        n = results.write_outputs("analyze-1", BASELINE, first, replace=True)
        assert n == len(first) * 3 - 48  # NaN values are stored as missing; cnc-02's good units (all NaN) not at all
        got = results.read_outputs(BASELINE, run="analyze-1", fields=["actual_kwh", "expected_kwh", "good"])
    expect = first.sort_values(["line", "machine", "site", "time"]).reset_index(drop=True)
    got = got.sort_values(["line", "machine", "site", "time"]).reset_index(drop=True)
    for col in ("actual_kwh", "expected_kwh", "good"):
        np.testing.assert_allclose(got[col].to_numpy(float), expect[col].to_numpy(float), equal_nan=True)
    # The machine page: one machine of one site, only its range; the same machine id at another site never leaks in.
    base = read_baseline(store, "north", "l1", "cnc-01", T0 + pd.Timedelta(hours=24), T0 + pd.Timedelta(hours=36))
    assert base.run == "analyze-1" and len(base.hours) == 12
    assert base.hours["actual_kwh"].max() < 20  # north's cnc-01 (south's is 50x)
    assert base.actual_kwh == pytest.approx(sum(range(1, 13)))
    assert base.deviation == pytest.approx(1 / 0.9 - 1)
    assert base.kwh_per_unit == pytest.approx(sum(range(7, 13)) / 60 + sum(range(1, 7)) / 60)  # hours with counts
    assert read_baseline(store, "east", "l1", "cnc-01", T0, T0 + pd.Timedelta(days=2)).run is None
    with results_for(store) as results:  # a list of sites (the materials page asks for the user's sites this way)
        listed = results.read_outputs(BASELINE, run="analyze-1", tags={"site": ["north", "east"]}, fields=["good"])
    assert set(listed["site"]) == {"north"} and len(listed) == 48  # cnc-01 (cnc-02 counts no good units)
    # Writing the run again replaces it; a newer run is what the page reads.
    with results_for(store) as results:
        results.write_outputs("analyze-1", BASELINE, hours_frame(offset=100.0, hours=24))
        again = results.read_outputs(BASELINE, run="analyze-1")
    assert len(again) == 3 * 24 and again["actual_kwh"].min() >= 100
    n2 = store_baseline_frame(store, "analyze-2", hours_frame(offset=1000.0, hours=24))
    assert n2 > 0
    newest = read_baseline(store, "north", "l1", "cnc-02", T0, T0 + pd.Timedelta(days=2))
    assert newest.run == "analyze-2" and newest.hours["actual_kwh"].min() >= 1000
    assert newest.kwh_per_unit is None  # cnc-02 counts nothing


def store_baseline_frame(store, run, frame):
    return store_output(store, run, BASELINE, frame, None, "baseline")


def test_store_baseline_from_interval_data_and_daily_energy_per_unit(store):
    from analytics.baseline import Baseline, BaselineSettings
    from analytics.data import IntervalData
    from analytics.tests.synthetic import production_frame

    data = IntervalData.from_frame(production_frame(days=14, machines=("north/l1/a",), seed=2), resolution_s=900)
    model = Baseline(BaselineSettings(scopes=("machine",))).fit(data)
    report: dict = {"warnings": []}
    assert store_baseline(store, "analyze-3", data, model, report) == 14 * 24 * 3
    assert report["stored_outputs"] == {"baseline": 14 * 24 * 3} and report["warnings"] == []
    base = read_baseline(store, "north", "l1", "a", data.start, data.stop)
    assert len(base.hours) == 14 * 24
    assert base.actual_kwh == pytest.approx(float(np.nansum(data.matrix("energy_kwh"))), rel=1e-6)
    daily = daily_kwh_per_unit(base, "Europe/Berlin")
    weekday = daily[daily["good"] > 0]
    assert len(weekday) == 10  # production on weekdays only (Berlin days: 14 UTC days touch 15 local ones)
    assert (daily["kwh_per_unit"] == daily["kwh"] / daily["good"]).all()
    assert daily["kwh"].sum() < base.actual_kwh  # weekend days without good units are left out


def test_a_field_unknown_for_a_series_reads_as_nan(store):
    t = pd.date_range(T0, periods=3, freq="h", tz="UTC")
    frame = pd.concat([pd.DataFrame({"time": t, "machine": "a", "first": np.nan, "second": [1.0, 2.0, 3.0]}),
                       pd.DataFrame({"time": t, "machine": "b", "first": [4.0, 5.0, 6.0], "second": np.nan})])
    with results_for(store) as results:
        assert results.write_outputs("nan-run", "probe", frame) == 6  # the all-NaN series are not written
        got = results.read_outputs("probe", run="nan-run").set_index(["machine", "time"])
        only_a = results.read_outputs("probe", run="nan-run", machines=["a"])
    assert got.loc["a", "first"].isna().all() and got.loc["a", "second"].tolist() == [1.0, 2.0, 3.0]
    assert got.loc["b", "second"].isna().all() and got.loc["b", "first"].tolist() == [4.0, 5.0, 6.0]
    assert list(only_a.columns) == ["time", "run", "machine", "first", "second"] and len(only_a) == 3
