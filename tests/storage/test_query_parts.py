"""Windowed queries over ranges no single rollup answers: split into rollup and raw parts, exact on every backend."""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pandas as pd
import pytest

from core.model import SeriesKey
from core.storage.process import ProcessStore
from core.storage.query_parts import NS, QueryPart, combine_parts, plan_parts

H = 3600 * NS
M = 60 * NS


def test_plan_aligns_the_middle_and_reads_only_the_ends_raw():
    base = 1_000 * H
    parts = plan_parts(3600, base + 30 * NS, base + 5 * H + 90 * NS)
    assert parts == [
        QueryPart(base + 30 * NS, base + M, None),
        QueryPart(base + M, base + 15 * M, 60),
        QueryPart(base + 15 * M, base + H, 900),
        QueryPart(base + H, base + 5 * H, 3600),
        QueryPart(base + 5 * H, base + 5 * H + M, 60),
        QueryPart(base + 5 * H + M, base + 5 * H + 90 * NS, None),
    ]
    # contiguous, in order, covering the range
    assert all(a.stop_ns == b.start_ns for a, b in itertools.pairwise(parts))
    # a window no rollup divides: one raw part; 300 s windows use the 1-min rollup only
    assert plan_parts(45, base, base + H) == [QueryPart(base, base + H, None)]
    assert plan_parts(300, base + 30 * NS, base + H) == [QueryPart(base + 30 * NS, base + M, None),
                                                          QueryPart(base + M, base + H, 60)]
    # rollups complete only up to a horizon (InfluxDB's tasks lag the clock): the newest stretch is read raw
    horizon = base + 4 * H + 17 * M + 20 * NS
    parts = plan_parts(3600, base, base + 5 * H, complete_until=lambda r: (horizon // (r * NS)) * r * NS)
    assert parts == [QueryPart(base, base + 4 * H, 3600), QueryPart(base + 4 * H, base + 4 * H + 15 * M, 900),
                     QueryPart(base + 4 * H + 15 * M, base + 4 * H + 17 * M, 60),
                     QueryPart(base + 4 * H + 17 * M, base + 5 * H, None)]


def test_combine_is_exact_per_aggregation():
    t = pd.to_datetime([0, 0, 3600 * NS], unit="ns", utc=True)
    p1, p2 = QueryPart(0, 10, 60), QueryPart(10, 20, None)

    def part(values):
        return pd.DataFrame({"time": t[: len(values)], "machine": ["a", "b"][: len(values)], "value": values})

    pieces = [(p1, "sum", part([4.0, 1.0])), (p1, "count", part([2.0, 1.0])),
              (p2, "sum", part([6.0])), (p2, "count", part([1.0]))]
    got = combine_parts(pieces, "mean")
    assert got["value"].tolist() == [10.0 / 3, 1.0] and got["machine"].tolist() == ["a", "b"]
    got = combine_parts([(p1, "last", part([4.0, 1.0])), (p2, "last", part([6.0]))], "last")
    assert got["value"].tolist() == [6.0, 1.0]  # the newer part wins where both have the window
    got = combine_parts([(p1, "count", part([2, 1])), (p2, "count", part([1]))], "count")
    assert got["value"].tolist() == [3, 1] and got["value"].dtype == np.int64


def reference(times, values, start, stop, window_s, agg):
    sel = (times >= start) & (times < stop) & np.isfinite(values)
    frame = pd.DataFrame({"w": (times[sel] // (window_s * NS)) * window_s * NS, "v": values[sel]})
    fn = {"mean": "mean", "sum": "sum", "count": "count", "min": "min", "max": "max", "last": "last"}[agg]
    out = frame.groupby("w")["v"].agg(fn)
    return out.index.to_numpy(), out.to_numpy(dtype=float)


@pytest.mark.parametrize("agg", ["mean", "sum", "count", "min", "max", "last"])
def test_unaligned_ranges_equal_the_raw_answer(store, agg, caplog):
    base = (time.time_ns() // H - 30) * H  # old enough that InfluxDB's rollups of it are refreshed on flush
    rng = np.random.default_rng(7)
    times = base + np.sort(rng.choice(6 * 3600 * 4, size=4000, replace=False)).astype(np.int64) * (NS // 4)
    values = rng.normal(10.0, 3.0, len(times))
    values[rng.choice(len(values), 40, replace=False)] = np.nan  # stored as missing: ignored by aggregations
    key = SeriesKey.of("electrical", {"site": "s", "line": "l", "machine": "m"}, "active_power_kw")
    store.write_arrays(key, times, values)
    store.flush()
    cases = [(3600, base + 37 * NS, base + 5 * H + 13 * M + 11 * NS),
             (900, base + 7 * M + 3 * NS, base + 4 * H + 59 * NS),
             (300, base + 2 * H + 59 * NS, base + 6 * H)]
    for window_s, start, stop in cases:
        got = store.query(key.measurement, key.field, start, stop, tags=key.tag_dict, window_s=window_s, agg=agg)
        want_t, want_v = reference(times, values, start, stop, window_s, agg)
        assert got["time"].astype("int64").tolist() == want_t.tolist(), (window_s, agg)
        assert got["value"].to_numpy(dtype=float) == pytest.approx(want_v, rel=1e-9), (window_s, agg)
        if not isinstance(store, ProcessStore):  # the attribute lives in the writer process there
            sources = {p.source for p in store.last_query_sources}
            assert "raw" in sources and any(s.startswith("rollup_") for s in sources), sources
            assert sum(p.stop_ns - p.start_ns for p in store.last_query_sources if p.res is None) < 2 * M
    # A window no rollup divides, over more than the raw budget: answered from raw points, and the log says so.
    with caplog.at_level(logging.WARNING, logger="core.storage.query_parts"):
        caplog.clear()
        got = store.query(key.measurement, key.field, base - 3 * 86400 * NS, base + 6 * H, window_s=45, agg=agg)
    assert len(got) > 0
    if not isinstance(store, ProcessStore):  # logged by the writer process there
        assert any("45 s is not a multiple" in r.getMessage() for r in caplog.records), caplog.text
        assert [p.source for p in store.last_query_sources] == ["raw"]
