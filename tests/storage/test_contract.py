"""One contract, every backend: the same cases run against the SQLite store and a real InfluxDB server.

Expected values are computed here from the points the test wrote (numpy/pandas over the raw data), never copied
from a backend's answer, so a backend that drops, duplicates or mis-aggregates values fails.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from core.errors import StoreError
from core.model import Point, SeriesKey, to_ns
from core.storage.base import AGGREGATIONS, SeriesBatch
from core.storage.sqlite import SQLiteStore

NS = 1_000_000_000
BASE = to_ns("2026-01-05T00:00:00+00:00")  # a Monday, in the past: every write is "late" for the rollup tasks
MACHINES = ("cnc-01", "cnc-02", "press-7")


def make_points(n_minutes: int = 180, step_s: int = 20, seed: int = 1) -> list[Point]:
    """Electrical points for three machines every ``step_s`` seconds, with deterministic noisy values."""
    rng = np.random.default_rng(seed)
    points = []
    for m, machine in enumerate(MACHINES):
        tags = {"site": "north", "line": "L1" if m < 2 else "L2", "machine": machine}
        for i in range(n_minutes * 60 // step_s):
            t = BASE + i * step_s * NS
            points.append(Point("electrical", tags, {
                "active_power_kw": round(float(10 * (m + 1) + rng.normal(0, 2)), 6),
                "energy_kwh": float(i + 1000 * m),
                "power_factor": round(float(rng.uniform(0.7, 1.0)), 6),
            }, t))
    return points


def frame_of(points: list[Point], field: str) -> pd.DataFrame:
    """Raw long frame of one field as the contract defines it (for computing expectations)."""
    rows = [{"time": p.time_ns, **p.tags, "value": p.fields[field]} for p in points if field in p.fields]
    return pd.DataFrame(rows)


def expected_windows(raw: pd.DataFrame, window_s: int, agg: str, start: int, stop: int) -> pd.DataFrame:
    w = window_s * NS
    sel = raw[(raw.time >= start) & (raw.time < stop)].dropna(subset=["value"]).copy()
    sel["bucket"] = (sel.time // w) * w
    sel = sel.sort_values("time")
    fn = {"mean": "mean", "sum": "sum", "min": "min", "max": "max", "last": "last", "count": "count"}[agg]
    out = sel.groupby(["machine", "bucket"])["value"].agg(fn).reset_index()
    return out.sort_values(["machine", "bucket"]).reset_index(drop=True)


def check_windows(store, raw, window_s, agg, start, stop, tags=None):
    got = store.query("electrical", "active_power_kw", start, stop, tags=tags, window_s=window_s, agg=agg)
    exp = expected_windows(raw if tags is None else raw[raw.machine.isin(
        [tags["machine"]] if isinstance(tags.get("machine"), str) else tags.get("machine", raw.machine.unique()))],
        window_s, agg, start, stop)
    got = got.sort_values(["machine", "time"]).reset_index(drop=True)
    assert len(got) == len(exp), f"{agg}/{window_s}s: {len(got)} windows, expected {len(exp)}"
    assert (got["time"].astype("int64").to_numpy() == exp["bucket"].to_numpy()).all()
    assert list(got["machine"]) == list(exp["machine"])
    np.testing.assert_allclose(got["value"].to_numpy(dtype=float), exp["value"].to_numpy(dtype=float), rtol=1e-9,
                               atol=1e-9, err_msg=f"{agg} over {window_s}s windows")
    if agg == "count":
        assert got["value"].dtype.kind == "i"
    return got


@pytest.fixture
def loaded(store):
    points = make_points()
    n = store.write(points)
    store.flush()
    assert n == len(points) * 3
    return store, points


def test_raw_query_returns_every_value_with_tags_and_status(loaded):
    store, points = loaded
    start, stop = BASE + 600 * NS, BASE + 3600 * NS
    got = store.query("electrical", "active_power_kw", start, stop, tags={"machine": "cnc-02"})
    exp = [p for p in points if p.tags["machine"] == "cnc-02" and start <= p.time_ns < stop]
    assert len(got) == len(exp) == 150  # 50 min at 20 s
    assert list(got.columns) == ["time", "line", "machine", "site", "value", "status"]
    assert (got["time"].astype("int64").to_numpy() == np.array([p.time_ns for p in exp])).all()
    np.testing.assert_array_equal(got["value"].to_numpy(), [p.fields["active_power_kw"] for p in exp])
    assert set(got["machine"]) == {"cnc-02"} and set(got["line"]) == {"L1"} and (got["status"] == 0).all()
    assert str(got["time"].dt.tz) == "UTC"


def test_half_open_range(loaded):
    store, _ = loaded
    got = store.query("electrical", "energy_kwh", BASE, BASE + 60 * NS, tags={"machine": "cnc-01"})
    assert got["time"].astype("int64").tolist() == [BASE, BASE + 20 * NS, BASE + 40 * NS]
    with pytest.raises(StoreError):
        store.query("electrical", "energy_kwh", BASE, BASE)


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_window_aggregations_match_raw_data(loaded, agg):
    store, points = loaded
    raw = frame_of(points, "active_power_kw")
    # 5-min windows over an aligned range (rollup-eligible) and over a range starting mid-window (raw only).
    check_windows(store, raw, 300, agg, BASE, BASE + 3 * 3600 * NS)
    check_windows(store, raw, 300, agg, BASE + 130 * NS, BASE + 7000 * NS)


@pytest.mark.parametrize("window_s", [60, 900, 3600, 1800, 7200])
def test_rollup_resolutions_give_exact_answers(loaded, window_s):
    store, points = loaded
    raw = frame_of(points, "active_power_kw")
    for agg in ("mean", "count", "max", "last"):
        check_windows(store, raw, window_s, agg, BASE, BASE + 3 * 3600 * NS)


def test_tag_filters_with_lists_and_no_match(loaded):
    store, points = loaded
    raw = frame_of(points, "active_power_kw")
    check_windows(store, raw, 900, "mean", BASE, BASE + 3600 * NS, tags={"machine": ["cnc-01", "press-7"]})
    got = store.query("electrical", "active_power_kw", BASE, BASE + 3600 * NS, tags={"line": "L2"}, window_s=900)
    assert set(got["machine"]) == {"press-7"} and len(got) == 4
    assert store.query("electrical", "active_power_kw", BASE, BASE + 3600 * NS, tags={"machine": "nope"}).empty
    assert store.query("electrical", "active_power_kw", BASE, BASE + 3600 * NS, tags={"machine": []}).empty
    assert store.query("gas", "flow_m3_h", BASE, BASE + 3600 * NS).empty


def test_pivot_gives_one_column_per_machine(loaded):
    store, points = loaded
    wide = store.query("electrical", "active_power_kw", BASE, BASE + 3600 * NS, window_s=900, pivot="machine")
    assert sorted(wide.columns) == sorted(MACHINES) and len(wide) == 4
    raw = frame_of(points, "active_power_kw")
    exp = expected_windows(raw, 900, "mean", BASE, BASE + 3600 * NS)
    for machine in MACHINES:
        np.testing.assert_allclose(wide[machine].to_numpy(), exp[exp.machine == machine]["value"].to_numpy())
    with pytest.raises(StoreError):  # two series per line value: the pivot would be ambiguous
        store.query("electrical", "active_power_kw", BASE, BASE + 3600 * NS, window_s=900, pivot="line")


def test_series_listing(loaded):
    store, _points = loaded
    infos = store.series("electrical")
    assert len(infos) == 9
    by_key = {(i.key.tag_dict["machine"], i.key.field): i for i in infos}
    info = by_key[("press-7", "energy_kwh")]
    assert info.count == 540 and info.first_ns == BASE and info.last_ns == BASE + 539 * 20 * NS
    assert info.key == SeriesKey.of("electrical", {"site": "north", "line": "L2", "machine": "press-7"}, "energy_kwh")
    assert store.series("gas") == []
    assert len(store.series()) == 9


def test_large_batch_arrives_complete(store):
    n = 120_000  # one write call, far beyond a single HTTP batch
    times = BASE + np.arange(n, dtype=np.int64) * NS
    values = np.arange(n, dtype=float) * 0.25
    key = SeriesKey.of("electrical", {"site": "s", "line": "l", "machine": "bulk"}, "active_power_kw")
    store.write([Point(key.measurement, key.tag_dict, {key.field: v}, int(t)) for t, v in zip(times, values)])
    store.flush()
    got = store.query("electrical", "active_power_kw", BASE, BASE + n * NS, tags={"machine": "bulk"},
                      window_s=3600, agg="count")
    assert int(got["value"].sum()) == n
    sums = store.query("electrical", "active_power_kw", BASE, BASE + n * NS, tags={"machine": "bulk"},
                       window_s=3600, agg="sum")
    assert math.isclose(float(sums["value"].sum()), float(values.sum()), rel_tol=1e-12)
    assert store.series("electrical")[0].count == n


def test_write_arrays_bulk_path(store):
    key = SeriesKey.of("gas", {"site": "süd", "line": "L 3", "machine": "boiler"}, "flow_m3_h")
    times = BASE + np.arange(0, 7200, 10, dtype=np.int64) * NS
    values = np.sin(np.arange(len(times))) + 5
    values[5] = np.nan
    status = np.zeros(len(times), dtype=np.int64)
    status[5] = 0x80000000
    assert store.write_arrays(key, times, values, status) == len(times)
    store.flush()
    raw = store.query("gas", "flow_m3_h", BASE, BASE + 7200 * NS)
    assert len(raw) == len(times) and math.isnan(raw["value"].iloc[5]) and raw["status"].iloc[5] == 0x80000000
    hourly = store.query("gas", "flow_m3_h", BASE, BASE + 7200 * NS, window_s=3600, agg="count")
    assert hourly["value"].tolist() == [359, 360]


NASTY = {
    "site": "Zürich Nord",
    "line": "Linie 1, Halle ä=2",
    "machine": "機械 \"3\" ${x} \\ end",
}


def test_non_ascii_and_special_tag_values_round_trip(store):
    points = [Point("electrical", NASTY, {"active_power_kw": float(i)}, BASE + i * 60 * NS) for i in range(120)]
    points.append(Point("electrical", {**NASTY, "machine": "plain"}, {"active_power_kw": 1.0}, BASE))
    store.write(points)
    store.flush()
    got = store.query("electrical", "active_power_kw", BASE, BASE + 7200 * NS, tags={"machine": NASTY["machine"]})
    assert len(got) == 120 and set(got["site"]) == {NASTY["site"]} and set(got["line"]) == {NASTY["line"]}
    win = store.query("electrical", "active_power_kw", BASE, BASE + 7200 * NS, tags={"line": NASTY["line"]},
                      window_s=3600, agg="sum")
    assert sorted(win["value"].tolist()) == [1.0, float(sum(range(60))), float(sum(range(60, 120)))]
    keys = {i.key.tag_dict["machine"]: i.key for i in store.series("electrical")}
    assert keys[NASTY["machine"]].tag_dict == NASTY


def test_out_of_order_and_duplicate_timestamps(store):
    tags = {"site": "s", "line": "l", "machine": "m"}
    order = np.random.default_rng(7).permutation(360)
    store.write([Point("electrical", tags, {"active_power_kw": float(i)}, BASE + int(i) * 10 * NS) for i in order])
    store.flush()
    # Rewrite the first 30 minutes with new values, partly in reverse order, partly twice in one batch.
    again = [Point("electrical", tags, {"active_power_kw": 1000.0 + i}, BASE + i * 10 * NS) for i in range(179, -1, -1)]
    again += [Point("electrical", tags, {"active_power_kw": 2000.0 + i}, BASE + i * 10 * NS) for i in range(0, 6)]
    store.write(again)
    store.flush()
    raw = store.query("electrical", "active_power_kw", BASE, BASE + 3600 * NS, tags=tags)
    expected = [2000.0 + i if i < 6 else (1000.0 + i if i < 180 else float(i)) for i in range(360)]
    assert raw["time"].astype("int64").tolist() == [BASE + i * 10 * NS for i in range(360)]
    assert raw["value"].tolist() == expected
    hourly = store.query("electrical", "active_power_kw", BASE, BASE + 3600 * NS, tags=tags, window_s=3600)
    assert hourly["value"].tolist() == pytest.approx([np.mean(expected)])
    quarter = store.query("electrical", "active_power_kw", BASE, BASE + 3600 * NS, tags=tags, window_s=900,
                          agg="max")
    assert quarter["value"].tolist() == [max(expected[i * 90:(i + 1) * 90]) for i in range(4)]
    assert store.series("electrical")[0].count == 360


def test_missing_values_are_nan_and_ignored_by_aggregations(store):
    tags = {"site": "s", "line": "l", "machine": "m"}
    points = [Point("electrical", tags, {"active_power_kw": 10.0, "power_factor": 0.9}, BASE + i * 60 * NS)
              for i in range(10)]
    points[3] = Point("electrical", tags, {"active_power_kw": None, "power_factor": 0.5}, BASE + 180 * NS, 0x80000000)
    points[4] = Point("electrical", tags, {"active_power_kw": float("nan"), "power_factor": None}, BASE + 240 * NS,
                      0x40000000)
    store.write(points)
    store.flush()
    raw = store.query("electrical", "active_power_kw", BASE, BASE + 600 * NS)
    assert len(raw) == 10 and raw["value"].isna().tolist() == [i in (3, 4) for i in range(10)]
    assert raw["status"].tolist()[3:5] == [0x80000000, 0x40000000]
    for window_s in (600, 60):
        cnt = store.query("electrical", "active_power_kw", BASE, BASE + 600 * NS, window_s=window_s, agg="count")
        assert int(cnt["value"].sum()) == 8
    mean = store.query("electrical", "power_factor", BASE, BASE + 600 * NS, window_s=600)
    assert mean["value"].tolist() == pytest.approx([(0.9 * 8 + 0.5) / 9])
    counts = {i.key.field: i.count for i in store.series("electrical")}
    assert counts == {"active_power_kw": 10, "power_factor": 10}


def test_last_values(loaded):
    store, points = loaded
    last = store.last_values("electrical", "energy_kwh", tags={"line": "L1"})
    assert sorted(last["machine"]) == ["cnc-01", "cnc-02"]
    final = {p.tags["machine"]: p for p in points}
    for _, row in last.iterrows():
        assert row["value"] == final[row["machine"]].fields["energy_kwh"]
        assert row["time"].value == final[row["machine"]].time_ns and row["status"] == 0


def test_bad_arguments_name_the_value(store):
    with pytest.raises(StoreError, match="median"):
        store.query("electrical", "active_power_kw", BASE, BASE + NS, window_s=60, agg="median")
    with pytest.raises(StoreError, match="window"):
        store.query("electrical", "active_power_kw", BASE, BASE + NS, window_s=-5)
    with pytest.raises(ValueError):
        store.query("electrical", "active_power_kw", dt.datetime(2026, 1, 1), BASE)


# -- bulk arrays mixed with rows (the embedded store keeps large write_arrays calls as columnar chunks) ---------------
WEEK = 7 * 1440  # one week at 1-min resolution: a bulk write as the backfill makes it
BULK_TAGS = {"site": "s", "line": "l", "machine": "bulk"}
BULK_KEY = SeriesKey.of("electrical", BULK_TAGS, "active_power_kw")


def _store_expected(expected: dict, times, values, status=None) -> None:
    """Apply a write to the model of what the store must hold: {ts: (value, status)}, a later write replaces."""
    status = np.zeros(len(times), dtype=np.int64) if status is None else status
    for t, v, s in zip(np.asarray(times).tolist(), np.asarray(values, dtype=float).tolist(), np.asarray(status).tolist()):
        expected[int(t)] = (v, int(s))


def _check_against(store, expected: dict, spans: list[tuple[int, int]]) -> None:
    """Raw, windowed (rollup and raw-aggregated), last value and series extent of the bulk series against the model."""
    ts = np.array(sorted(expected), dtype=np.int64)
    vals = np.array([expected[t][0] for t in ts.tolist()], dtype=float)
    codes = np.array([expected[t][1] for t in ts.tolist()], dtype=np.int64)
    raw_model = pd.DataFrame({"time": ts, "machine": "bulk", "value": vals})
    for start, stop in spans:
        got = store.query("electrical", "active_power_kw", start, stop, tags={"machine": "bulk"})
        sel = (ts >= start) & (ts < stop)
        assert got["time"].astype("int64").tolist() == ts[sel].tolist()
        np.testing.assert_array_equal(got["value"].to_numpy(dtype=float), vals[sel])
        assert got["status"].tolist() == codes[sel].tolist()
        for window_s in (60, 300, 900, 3600, 7200, 86400):
            for agg in AGGREGATIONS:
                check_windows(store, raw_model, window_s, agg, start, stop, tags={"machine": "bulk"})
    info = {i.key: i for i in store.series("electrical")}[BULK_KEY]
    assert (info.count, info.first_ns, info.last_ns) == (len(ts), int(ts[0]), int(ts[-1]))
    last = store.last_values("electrical", "active_power_kw", tags={"machine": "bulk"})
    assert last["time"].astype("int64").tolist() == [int(ts[-1])] and last["status"].tolist() == [int(codes[-1])]
    np.testing.assert_array_equal(last["value"].to_numpy(dtype=float), vals[-1:])


def _week(offset_s: int = 0, step_s: int = 60, n: int = WEEK, seed: int = 3):
    times = BASE + offset_s * NS + np.arange(n, dtype=np.int64) * step_s * NS
    values = np.round(np.random.default_rng(seed).normal(40, 8, n), 3)
    return times, values


def test_bulk_then_overlapping_row_writes(store):
    expected: dict = {}
    times, values = _week()
    assert store.write_arrays(BULK_KEY, times, values) == WEEK
    _store_expected(expected, times, values)
    # Rows into the middle of the bulk data: replacing stored timestamps and adding new ones between them.
    rows = [Point("electrical", BULK_TAGS, {"active_power_kw": 1000.0 + i}, BASE + (2 * 86400 + 7200 + 60 * i) * NS)
            for i in range(30)]
    rows += [Point("electrical", BULK_TAGS, {"active_power_kw": -5.0 - i}, BASE + (3 * 86400 + 30 + 600 * i) * NS)
             for i in range(12)]
    store.write(rows)
    store.flush()
    for p in rows:
        expected[p.time_ns] = (p.fields["active_power_kw"], 0)
    _check_against(store, expected, [(BASE, BASE + 8 * 86400 * NS), (BASE + 2 * 86400 * NS + 130 * NS,
                                                                     BASE + 3 * 86400 * NS + 7777 * NS)])


def test_bulk_over_bulk_with_duplicate_timestamps(store):
    expected: dict = {}
    times, values = _week()
    store.write_arrays(BULK_KEY, times, values)
    _store_expected(expected, times, values)
    # A second bulk write: half a week later, on a 30-s grid (half the timestamps repeat stored ones), and with
    # repeated timestamps inside the batch (the later one wins), out of order.
    t2, v2 = _week(offset_s=int(3.5 * 86400), step_s=30, seed=4)
    t2 = np.concatenate([t2, t2[:500]])
    v2 = np.concatenate([v2, v2[:500] + 0.5])
    order = np.random.default_rng(5).permutation(len(t2))
    mixed_t, mixed_v = t2[order], v2[order]
    assert store.write_arrays(BULK_KEY, mixed_t, mixed_v) == len(t2)
    store.flush()
    keep: dict = {}  # within one batch the later position wins
    for t, v in zip(mixed_t.tolist(), mixed_v.tolist()):
        keep[t] = v
    _store_expected(expected, list(keep), list(keep.values()))
    _check_against(store, expected, [(BASE, BASE + 8 * 86400 * NS), (BASE + 3 * 86400 * NS + 30 * NS,
                                                                     BASE + 4 * 86400 * NS + 3601 * NS)])


def test_nan_and_status_in_bulk(store):
    expected: dict = {}
    times, values = _week(step_s=20, n=3 * 4320)  # three days at 20 s: no window at >= 60 s holds only NaN
    values[np.arange(len(values)) % 7 == 3] = np.nan
    status = np.where(np.isnan(values), 0x80310000, 0).astype(np.int64)
    status[10] = 0x40000000  # an uncertain but present value
    store.write_arrays(BULK_KEY, times, values, status)
    store.flush()
    _store_expected(expected, times, values, status)
    _check_against(store, expected, [(BASE, BASE + 3 * 86400 * NS), (BASE + 50 * NS, BASE + 86400 * NS + 61 * NS)])
    raw = store.query("electrical", "active_power_kw", BASE, BASE + 3 * 86400 * NS, tags={"machine": "bulk"})
    assert int(raw["value"].isna().sum()) == int(np.isnan(values).sum())


def test_windows_spanning_rows_and_bulk(store):
    expected: dict = {}
    # Day 0 as rows (a live collector), days 1-7 as one bulk write, day 8 as rows again, one row inside bulk hours.
    rows = [Point("electrical", BULK_TAGS, {"active_power_kw": float(i % 97)}, BASE + 60 * i * NS) for i in range(1440)]
    times, values = _week(offset_s=86400)
    later = [Point("electrical", BULK_TAGS, {"active_power_kw": 3.0 * i}, BASE + (8 * 86400 + 45 * i) * NS)
             for i in range(200)]
    store.write(rows)
    store.write_arrays(BULK_KEY, times, values)
    store.write(later)
    store.flush()
    for p in rows + later:
        expected[p.time_ns] = (p.fields["active_power_kw"], 0)
    _store_expected(expected, times, values)
    _check_against(store, expected, [(BASE, BASE + 9 * 86400 * NS), (BASE + 86400 * NS - 3600 * NS - 30 * NS,
                                                                     BASE + 8 * 86400 * NS + 4000 * NS)])


def test_series_counts_with_bulk_writes(store):
    times, values = _week()
    values[::11] = np.nan
    store.write_arrays(BULK_KEY, times, values)
    store.write_arrays(BULK_KEY, times[:100], values[:100] + 1)  # same timestamps: replaced, not counted twice
    other = SeriesKey.of("electrical", {**BULK_TAGS, "machine": "other"}, "active_power_kw")
    store.write_arrays(other, times[::2], values[::2])
    store.flush()
    infos = {i.key: i for i in store.series("electrical")}
    assert infos[BULK_KEY].count == WEEK and infos[other].count == len(times[::2])
    assert (infos[BULK_KEY].first_ns, infos[BULK_KEY].last_ns) == (int(times[0]), int(times[-1]))
    assert (infos[other].first_ns, infos[other].last_ns) == (int(times[0]), int(times[::2][-1]))


def test_bulk_starting_mid_bucket_with_a_row_among_missing_values(store):
    expected: dict = {}
    # Starts 37 s into an hour (and a 15-min bucket), crosses two day boundaries; 20-s steps, so no window of a
    # minute or more holds only missing values.
    times, values = _week(offset_s=13 * 3600 + 37, step_s=20, n=10000, seed=9)
    values[::13] = np.nan
    status = np.where(np.isnan(values), 0x80000000, 0).astype(np.int64)
    store.write_arrays(BULK_KEY, times, values, status)
    _store_expected(expected, times, values, status)
    # A row between stored values: the values around it (with their status) must stay as they were.
    row = Point("electrical", BULK_TAGS, {"active_power_kw": 7.5}, int(times[2000]) + 5 * NS)
    store.write([row])
    store.flush()
    expected[row.time_ns] = (7.5, 0)
    _check_against(store, expected, [(BASE, BASE + 5 * 86400 * NS), (BASE + 13 * 3600 * NS,
                                                                     BASE + (2 * 86400 + 600) * NS)])


def _reader_process(path: str, stop_ns: int, rounds: int, out) -> None:
    """Query the store from another process while it is being rewritten; report what each snapshot showed."""
    from core.storage.sqlite import SQLiteStore

    seen = []
    with SQLiteStore(path) as reader:
        for _ in range(rounds):
            raw = reader.query("electrical", "active_power_kw", BASE, stop_ns, tags={"machine": "bulk"})
            hourly = reader.query("electrical", "active_power_kw", BASE, stop_ns, tags={"machine": "bulk"},
                                  window_s=3600, agg="count")
            values = set(raw["value"].tolist())
            seen.append((len(raw), int(hourly["value"].sum()), len(values)))
    out.put(seen)


@pytest.mark.integration  # a reader process beside the writer
def test_sqlite_reader_process_sees_whole_writes(tmp_path):
    """WAL: a reader process never sees half of a bulk merge or of a chunk turning into rows."""
    import multiprocessing

    from core.storage.sqlite import SQLiteStore

    path = str(tmp_path / "concurrent.db")
    times, _ = _week()
    stop = int(times[-1]) + NS
    with SQLiteStore(path) as writer:
        writer.write_arrays(BULK_KEY, times, np.full(WEEK, 0.0))
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        reader = ctx.Process(target=_reader_process, args=(path, stop, 40, out))
        reader.start()
        k = 0
        while reader.is_alive() and k < 400:
            k += 1
            # Every write replaces a whole generation of values: bulk merges first, later a row in each day (the
            # chunks become rows) and bulk writes through the row path.
            if k % 25 == 0:
                writer.write([Point("electrical", BULK_TAGS, {"active_power_kw": float(k)}, int(t))
                              for t in times[:: 1440]])
            writer.write_arrays(BULK_KEY, times, np.full(WEEK, float(k)))
        seen = out.get(timeout=120)
        reader.join(timeout=60)
    assert reader.exitcode == 0 and len(seen) == 40 and k > 1
    # Each snapshot holds every value once, and the values of one write (or of one write plus its rows).
    assert all(n_raw == WEEK and n_hourly == WEEK and distinct <= 2 for n_raw, n_hourly, distinct in seen), seen


def test_bulk_write_over_rows_and_bulk_together(store):
    expected: dict = {}
    rows = [Point("electrical", BULK_TAGS, {"active_power_kw": float(i % 50)}, BASE + 60 * i * NS) for i in range(1440)]
    store.write(rows)
    for p in rows:
        expected[p.time_ns] = (p.fields["active_power_kw"], 0)
    times, values = _week(offset_s=86400)
    store.write_arrays(BULK_KEY, times, values)
    _store_expected(expected, times, values)
    # One bulk write over the end of the row day and the start of the bulk days, on a 30-s grid, some missing.
    t3, v3 = _week(offset_s=86400 - 5400, step_s=30, n=6000, seed=11)
    # Missing values only at new (:30) timestamps: replacing a stored value by a missing one is not covered here.
    v3[1::34] = np.nan
    s3 = np.where(np.isnan(v3), 0x80000000, 0).astype(np.int64)
    store.write_arrays(BULK_KEY, t3, v3, s3)
    store.flush()
    _store_expected(expected, t3, v3, s3)
    _check_against(store, expected, [(BASE, BASE + 8 * 86400 * NS), (BASE + 80000 * NS, BASE + 150000 * NS)])


def test_small_writes_marked_bulk_answer_like_any_other(store):
    # A backfill marks its writes bulk=True whatever their size (short material series); rows written later into
    # the same hours, and a second bulk write over the first, must give the same answers as plain writes would.
    expected: dict = {}
    times, values = _week(n=300, seed=5)
    assert store.write_arrays(BULK_KEY, times[:100], values[:100], bulk=True) == 100
    assert store.write_arrays(BULK_KEY, times[50:300], values[50:300], bulk=True) == 250
    _store_expected(expected, times, values)
    late = [Point("electrical", BULK_TAGS, {"active_power_kw": 7.5}, int(times[10]))]
    store.write(late)
    store.flush()
    expected[int(times[10])] = (7.5, 0)
    _check_against(store, expected, [(BASE, BASE + 86400 * NS), (int(times[5]), int(times[250]))])


def test_sqlite_failed_write_leaves_no_stale_series(tmp_path):
    # A write that fails half-way is rolled back whole; the series it created must not linger in the id cache,
    # or the next write of that series would store points under an id that no longer exists.
    store = SQLiteStore(tmp_path / "rollback.db")
    tags = {"site": "s", "line": "l", "machine": "new"}

    def points():
        yield Point("electrical", tags, {"active_power_kw": 1.0}, BASE)
        raise RuntimeError("the source broke mid-batch")

    with pytest.raises(RuntimeError):
        store.write(points())
    assert store.series() == []
    store.write([Point("electrical", tags, {"active_power_kw": 2.0}, BASE)])
    listed = store.series()
    assert [(s.key.tag_dict["machine"], s.count) for s in listed] == [("new", 1)]
    assert store.query("electrical", "active_power_kw", BASE, BASE + NS)["value"].tolist() == [2.0]
    store.close()
    with SQLiteStore(tmp_path / "rollback.db") as reopened:  # what another process sees
        assert [s.count for s in reopened.series()] == [1]
        assert reopened.query("electrical", "active_power_kw", BASE, BASE + NS)["value"].tolist() == [2.0]


def test_live_trickle_then_late_and_repeated_values(store):
    # A collector's pattern: many small batches, each appending a few values per series into the same buckets,
    # with missing values among them; then a late value inside an old bucket and a batch repeating a timestamp.
    expected: dict = {}
    rng = np.random.default_rng(11)
    t = BASE + 7 * NS
    for batch in range(40):
        points = []
        for k in range(5):
            value = None if (batch * 5 + k) % 17 == 0 else round(float(rng.normal(30, 5)), 3)
            status = 0x80310000 if value is None else 0
            points.append(Point("electrical", BULK_TAGS, {"active_power_kw": value}, t, status))
            expected[t] = (math.nan if value is None else value, status)
            t += 13 * NS
        store.write(points)
    late = BASE + 100 * NS + 1  # between two stored values, in an early bucket
    store.write([Point("electrical", BULK_TAGS, {"active_power_kw": -3.0}, late)])
    expected[late] = (-3.0, 0)
    again = int(sorted(expected)[50])
    store.write([Point("electrical", BULK_TAGS, {"active_power_kw": 77.0}, t),
                 Point("electrical", BULK_TAGS, {"active_power_kw": 78.0}, t),
                 Point("electrical", BULK_TAGS, {"active_power_kw": 500.0}, again)])
    expected[t] = (78.0, 0)
    expected[again] = (500.0, 0)
    store.flush()
    _check_against(store, expected, [(BASE, BASE + 86400 * NS), (BASE + 60 * NS, BASE + 3600 * NS)])


def _batch_of(entries: list[tuple[SeriesKey, int, float, int]], extra_keys: tuple = ()) -> SeriesBatch:
    keys = tuple(dict.fromkeys([e[0] for e in entries] + list(extra_keys)))
    index = {k: i for i, k in enumerate(keys)}
    return SeriesBatch(keys, np.array([index[e[0]] for e in entries], dtype=np.int64),
                       np.array([e[1] for e in entries], dtype=np.int64), np.array([e[2] for e in entries], dtype=float),
                       np.array([e[3] for e in entries], dtype=np.int64))


def test_write_batch_many_series_shuffled_with_repeats_and_missing(store):
    # The collectors' shape: several series interleaved in one batch, out of order, a repeated (series, time) whose
    # last value wins, missing values with their status, and a key the batch does not use (must not appear).
    rng = np.random.default_rng(21)
    entries = []
    for m, machine in enumerate(MACHINES):
        key = SeriesKey.of("electrical", {"site": "north", "line": "L1", "machine": machine}, "active_power_kw")
        for i in range(400):
            missing = (i + m) % 23 == 0
            entries.append((key, BASE + i * 7 * NS, math.nan if missing else round(float(rng.normal(20, 4)), 3),
                            0x80310000 if missing else 0))
    order = rng.permutation(len(entries))
    entries = [entries[i] for i in order]
    first = entries[0]
    entries.append((first[0], first[1], 999.5, 0))  # repeats the first entry's timestamp: this one wins
    unused = SeriesKey.of("electrical", {"site": "north", "line": "L1", "machine": "unused"}, "active_power_kw")
    assert store.write_batch(_batch_of(entries, extra_keys=(unused,))) == len(entries)
    # A second batch appends to every series (the live pattern) and a third puts one late value into an old bucket.
    more = [(e[0], BASE + (400 + i) * 7 * NS, float(i), 0) for e in entries[:3] for i in range(5)]
    store.write_batch(_batch_of(more))
    late = (entries[5][0], BASE + 3 * NS, -7.0, 0)
    store.write_batch(_batch_of([late]))
    store.flush()
    model: dict = {}
    for key, t, v, s in entries + more + [late]:
        model[(key.tag_dict["machine"], t)] = (v, s)
    raw = pd.DataFrame([{"machine": m, "time": t, "value": v, "status": s} for (m, t), (v, s) in model.items()])
    raw = raw.sort_values(["machine", "time"]).reset_index(drop=True)
    got = store.query("electrical", "active_power_kw", BASE, BASE + 86400 * NS)
    got = got.sort_values(["machine", "time"]).reset_index(drop=True)
    assert got["machine"].tolist() == raw["machine"].tolist()
    assert got["time"].astype("int64").tolist() == raw["time"].tolist()
    np.testing.assert_array_equal(got["value"].to_numpy(dtype=float), raw["value"].to_numpy(dtype=float))
    assert got["status"].tolist() == raw["status"].tolist()
    for window_s in (60, 900, 3600):
        for agg in AGGREGATIONS:
            check_windows(store, raw, window_s, agg, BASE, BASE + 86400 * NS)
    listed = {i.key.tag_dict["machine"]: i.count for i in store.series("electrical")}
    assert listed == raw.groupby("machine").size().to_dict()


def test_write_batch_into_hours_of_bulk_data(store):
    # A collector starting after a backfill: its first batch lands in the last hour of the bulk data (replacing one
    # stored value) and after it, together with a series that has no history.
    expected: dict = {}
    times, values = _week(n=3 * 1440)
    store.write_arrays(BULK_KEY, times, values, bulk=True)
    _store_expected(expected, times, values)
    other = SeriesKey.of("electrical", {"site": "s", "line": "l", "machine": "fresh"}, "active_power_kw")
    end = int(times[-1])
    entries = [(BULK_KEY, end - 1800 * NS, 5.5, 0), (BULK_KEY, end - 1799 * NS, 6.5, 0)]
    entries += [(BULK_KEY, end + i * 20 * NS, 100.0 + i, 0) for i in range(1, 200)]
    entries += [(other, end + i * 20 * NS, 1.0 + i, 0) for i in range(1, 200)]
    store.write_batch(_batch_of(entries))
    store.flush()
    for key, t, v, s in entries:
        if key == BULK_KEY:
            expected[t] = (v, s)
    _check_against(store, expected, [(BASE, BASE + 4 * 86400 * NS), (end - 7200 * NS, end + 3600 * NS)])
    fresh = store.query("electrical", "active_power_kw", BASE, BASE + 4 * 86400 * NS, tags={"machine": "fresh"})
    assert fresh["value"].tolist() == [1.0 + i for i in range(1, 200)]


def test_write_batch_rejects_mismatched_columns():
    key = SeriesKey.of("electrical", {"machine": "m"}, "active_power_kw")
    with pytest.raises(StoreError, match="differ in length"):
        SeriesBatch((key,), np.zeros(3, dtype=np.int64), np.zeros(2, dtype=np.int64), np.zeros(3), np.zeros(3))
    with pytest.raises(StoreError, match=r"outside 0\.\.0"):
        SeriesBatch((key,), np.array([0, 1]), np.zeros(2, dtype=np.int64), np.zeros(2), np.zeros(2, dtype=np.int64))


def test_live_batches_with_pauses_late_values_and_arrays_across_coarse_buckets(store):
    # Appending batches that cross 15-min and 1-h boundaries, pause for hours and resume, a late value into a bucket
    # that is still open, a small write_arrays (row path) after the pause, and a series that simply stops.
    expected: dict = {}
    stopper = SeriesKey.of("electrical", {"site": "s", "line": "l", "machine": "stops"}, "active_power_kw")
    stopper_values = {}
    t = BASE + 3 * NS
    for batch in range(30):
        entries = []
        for k in range(4):
            v = round(10 + batch + 0.25 * k, 3)
            entries.append((BULK_KEY, t, v, 0))
            expected[t] = (v, 0)
            if batch < 12:
                entries.append((stopper, t, -v, 0))
                stopper_values[t] = -v
            t += 97 * NS
        if batch == 20:
            t += 5 * 3600 * NS  # pause, then resume hours later
        store.write_batch(_batch_of(entries))
    late = t - 150 * NS - 1  # inside the newest, still open, buckets
    store.write(
        [Point("electrical", BULK_TAGS, {"active_power_kw": 1234.5}, late)])
    expected[late] = (1234.5, 0)
    arrays_t = t + 7200 * NS + np.arange(5, dtype=np.int64) * 61 * NS
    store.write_arrays(BULK_KEY, arrays_t, np.arange(5, dtype=float) - 50)
    _store_expected(expected, arrays_t, np.arange(5, dtype=float) - 50)
    store.flush()
    _check_against(store, expected, [(BASE, BASE + 86400 * NS), (BASE + 3600 * NS, BASE + 7 * 3600 * NS)])
    stop_raw = pd.DataFrame({"time": list(stopper_values), "machine": "stops", "value": list(stopper_values.values())})
    for window_s in (900, 3600):
        for agg in AGGREGATIONS:
            check_windows(store, stop_raw, window_s, agg, BASE, BASE + 86400 * NS, tags={"machine": "stops"})
    info = {i.key: i for i in store.series("electrical")}[stopper]
    assert info.count == len(stopper_values)


def test_sqlite_layout_version_upgraded_from_1_and_newer_refused(tmp_path):
    import sqlite3

    path = tmp_path / "v.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")  # a file of the eager-rollup layout
    conn.commit()
    SQLiteStore(path).close()
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"layout version 3, newer than this Wattline understands \(2\)"):
        SQLiteStore(path)


def test_sqlite_two_writers_on_one_file_keep_rollups_exact(tmp_path):
    # Each store remembers the tails of the series it wrote; a write by another connection in between must make it
    # look again, or a value older than the other writer's would be folded in as if it were the newest.
    path = tmp_path / "two.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    expected: dict = {}

    def put(store, t, v):
        store.write_batch(_batch_of([(BULK_KEY, t, v, 0)]))
        expected[t] = (v, 0)

    put(a, BASE + 10 * NS, 1.0)
    put(a, BASE + 20 * NS, 2.0)
    put(b, BASE + 40 * NS, 4.0)
    put(b, BASE + 50 * NS, 5.0)  # b is ahead
    put(a, BASE + 30 * NS, 3.0)  # after a's newest, before b's: not an append
    put(a, BASE + 16 * 60 * NS, 9.0)  # crosses into the next 15-min bucket
    a.close()
    _check_against(b, expected, [(BASE, BASE + 3600 * NS)])
    b.close()
