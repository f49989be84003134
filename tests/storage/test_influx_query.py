"""InfluxDB: a range ending now is answered by the rollups for its complete buckets and raw points for the newest
minutes only (exactly the raw answer), and listing the series does not count the whole history on every call."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.model import SeriesKey

NS = 1_000_000_000
H = 3600 * NS
KEY = SeriesKey.of("electrical", {"site": "s", "line": "l", "machine": "m"}, "active_power_kw")

pytestmark = [pytest.mark.integration, pytest.mark.influx]


def write_history_and_live(store):
    now = time.time_ns()
    start = (now // H - 3) * H
    old = np.arange(start, now - 300 * NS, 15 * NS, dtype=np.int64)  # late when written: rolled up by the store
    live = np.arange(now - 90 * NS, now, 5 * NS, dtype=np.int64)  # the newest minutes: no rollup holds them yet
    times = np.concatenate([old, live])
    rng = np.random.default_rng(3)
    values = rng.normal(20.0, 4.0, len(times))
    store.write_arrays(KEY, times, values)
    store.flush()
    # Every rollup bucket computed from the raw points, so whichever bucket the query takes as complete is exact
    # however long the test takes (the tasks would get there too, on their own schedule).
    store.refresh_rollups(start, now + 60 * NS)
    return start, now, times, values


def test_a_range_ending_now_reads_rollups_and_only_the_newest_minutes_raw(influx_store):
    store = influx_store
    _start, _now, times, values = write_history_and_live(store)
    for window_s in (3600, 300, 60):
        w = window_s * NS
        stop = (time.time_ns() // w + 1) * w  # the dashboard's range: ends with the window holding now
        lo = stop - 3 * H
        for agg in ("mean", "sum", "count", "min", "max", "last"):
            store.use_rollups = True
            got = store.query(KEY.measurement, KEY.field, lo, stop, window_s=window_s, agg=agg)
            parts = store.last_query_sources
            store.use_rollups = False
            raw = store.query(KEY.measurement, KEY.field, lo, stop, window_s=window_s, agg=agg)
            assert [p.source for p in store.last_query_sources] == ["raw"]
            # which source answered: rollups up to a few minutes before now, raw points after
            assert any(p.res is not None for p in parts), parts
            assert parts[-1].res is None and parts[-1].start_ns > time.time_ns() - 7 * 60 * NS, parts
            assert sum(p.stop_ns - p.start_ns for p in parts if p.res is not None) > 1.5 * H
            assert got["time"].tolist() == raw["time"].tolist(), (window_s, agg)
            assert got["value"].to_numpy(dtype=float) == pytest.approx(raw["value"].to_numpy(dtype=float),
                                                                      rel=1e-9), (window_s, agg)
            # and the numbers are the stored points' (live ones included)
            sel = (times >= lo) & (times < stop)
            if agg == "count":
                assert int(got["value"].sum()) == int(sel.sum())
            if agg == "sum":
                assert float(got["value"].sum()) == pytest.approx(float(values[sel].sum()), rel=1e-9)


def test_listing_series_counts_the_history_once(influx_store):
    store = influx_store
    _start, _now, times, _values = write_history_and_live(store)
    (info,) = store.series("electrical")
    assert info.count == len(times) and info.first_ns == int(times[0]) and info.last_ns == int(times[-1])
    assert store._series_counts.last_counted[0][0] == 0  # the first listing counts everything
    # Later listings count only what is newer than the kept counts.
    (info,) = store.series("electrical")
    assert info.count == len(times)
    assert all(lo > 0 for lo, _hi in store._series_counts.last_counted), store._series_counts.last_counted
    # New live points are counted at once...
    live = np.array([time.time_ns()], dtype=np.int64)
    store.write_arrays(KEY, live, np.array([1.0]))
    store.flush()
    (info,) = store.series("electrical")
    assert info.count == len(times) + 1 and info.last_ns == int(live[0])
    assert all(lo > 0 for lo, _hi in store._series_counts.last_counted)
    # ... and late ones written through this store make the next listing count everything again.
    late = np.array([int(times[0]) - H], dtype=np.int64)
    store.write_arrays(KEY, late, np.array([2.0]))
    store.flush()
    (info,) = store.series("electrical")
    assert info.count == len(times) + 2 and info.first_ns == int(late[0])
    assert store._series_counts.last_counted[0][0] == 0
