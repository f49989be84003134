"""The embedded store's catalogue (``SQLiteStore.series``) answers all series in a few statements, not two per series
(a follower reads it on every tick), with each series' count and extent equal to what its raw points say."""

from __future__ import annotations

import numpy as np

from core.model import SeriesKey
from core.storage.sqlite import SQLiteStore

NS = 1_000_000_000
START = 1_740_960_000 * NS  # 2025-03-03 00:00 UTC


def _reference(store: SQLiteStore, measurement: str | None) -> dict:
    """Count and extent of every series from its raw points (stored missing values included)."""
    out = {}
    for key in {i.key for i in store.series()}:
        if measurement is not None and key.measurement != measurement:
            continue
        frame = store.query(key.measurement, key.field, 0, 2**62, tags=key.tag_dict)
        # The tags select this series and any with more tags: keep the rows of this one only.
        extra = [c for c in frame.columns if c not in ("time", "value", "status", *key.tag_dict)]
        if extra:
            frame = frame[frame[extra].isna().all(axis=1)]
        ts = frame["time"].astype("int64").to_numpy()
        out[key] = (len(ts), int(ts.min()), int(ts.max()))
    return out


def test_series_counts_and_extents_match_the_raw_points(tmp_path):
    rng = np.random.default_rng(3)
    with SQLiteStore(tmp_path / "s.db") as store:
        for m in range(6):
            tags = {"site": "s1", "line": f"l{m % 2}", "machine": f"m{m}"}
            n = 2000 + 500 * m
            t = START + np.sort(rng.choice(7 * 86400, n, replace=False)).astype(np.int64) * NS
            v = rng.normal(20, 3, n)
            v[100:150] = np.nan  # stored missing values count
            # Rows, bulk day chunks, and both for one series (an old stretch in chunks, newer rows).
            if m == 5:
                half = n // 2
                store.write_arrays(SeriesKey.of("electrical", tags, "active_power_kw"), t[:half], v[:half], bulk=True)
                store.write_arrays(SeriesKey.of("electrical", tags, "active_power_kw"), t[half:], v[half:])
            else:
                store.write_arrays(SeriesKey.of("electrical", tags, "active_power_kw"), t, v, bulk=m % 2 == 1)
            # Rewritten values replace the stored ones (counted once).
            store.write_arrays(SeriesKey.of("electrical", tags, "active_power_kw"), t[:10], v[:10] + 1)
            store.write_arrays(SeriesKey.of("machine_state", tags, "state"), t[::7], np.ones(len(t[::7])))
        store.flush()
        statements: list[str] = []
        conn = store._conn()
        conn.set_trace_callback(statements.append)
        try:
            infos = store.series("electrical")
        finally:
            conn.set_trace_callback(None)
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 4  # + the catalogue refresh
        got = {i.key: (i.count, i.first_ns, i.last_ns) for i in infos}
        assert got == _reference(store, "electrical")
        assert len(got) == 6
        everything = {i.key: (i.count, i.first_ns, i.last_ns) for i in store.series()}
        assert everything == _reference(store, None)
        assert len(everything) == 12
        assert store.series("gas") == []


def test_a_series_another_process_added_before_ours_is_read(tmp_path):
    """Two stores on one file (the collector's writer process and the collector, say): the other one adds a series,
    then ours adds one (so the newest id is ours); reading the other's series must still find its points."""
    from core.model import Point

    path = tmp_path / "w.db"
    ours, theirs = SQLiteStore(path), SQLiteStore(path)
    try:
        theirs.write([Point("electrical", {"machine": "m1"}, {"active_power_kw": 5.0}, START)])
        theirs.flush()
        ours.write([Point("wattline_collector", {"server": "plant"}, {"received": 1.0}, START)])
        ours.flush()
        frame = ours.query("electrical", "active_power_kw", 0, 2**62)
        assert list(frame["value"]) == [5.0]
        assert {i.key.measurement for i in ours.series()} == {"electrical", "wattline_collector"}
    finally:
        ours.close()
        theirs.close()
