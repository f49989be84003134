"""The fast read path of Store.read_frame (frame-free raw reads of the embedded store, core.storage.sqlite_frame, and
the numpy join of query.wide_frame) gives exactly the reference path's answer (raw reads through Store.query and
query._split, the pandas join), on data with register rollovers,
resets, gaps (stored missing values and silence), machine states, a daylight-saving change and several chunks, in both
of the embedded store's layouts (rows and bulk day chunks)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from core.model import SeriesKey
from core.storage import query as q
from core.storage import sqlite_frame
from core.storage.base import Column
from core.storage.intervals import SEMANTICS_CHANGED
from core.storage.sqlite import SQLiteStore

NS = 1_000_000_000
MIN = 60 * NS
# 2025-03-28 00:00 UTC: the range crosses the Europe/Berlin spring-forward night (2025-03-30).
START = int(pd.Timestamp("2025-03-28", tz="UTC").value)
DAYS = 5
COLUMNS = [
    Column("reg", "electrical", "energy_kwh", "increase", register_max=1000.0),
    Column("integral", "electrical", "active_power_kw", "integral", max_hold_s=6 * 3600),
    Column("power_mean_kw", "electrical", "active_power_kw", "twmean", max_hold_s=6 * 3600),
    Column("power_max_kw", "electrical", "active_power_kw", "max"),
    Column("s", "machine_state", "state", "state_seconds", max_hold_s=3 * 86400),
    Column("good", "production", "good_count", "increase"),
]


def _write_plant(store: SQLiteStore, bulk: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for m in range(4):
        tags = {"site": "north", "line": f"L{m % 2}", "machine": f"m{m}"}
        t = START + np.arange(DAYS * 1440) * MIN + rng.integers(0, 20, DAYS * 1440) * NS
        power = np.clip(rng.normal(20 + 5 * m, 6, len(t)), 0, None)
        power[1000:1200] = np.nan  # a meter gap stored as missing values
        keep = np.ones(len(t), dtype=bool)
        keep[3000:3500] = False  # silence: the collector was down
        energy = 950.0 + np.cumsum(power / 60.0 * (1 + 0.2 * m))
        status = np.zeros(len(t), dtype=np.int64)
        reset_at = 2500 + 300 * m
        energy[reset_at:] -= energy[reset_at] - 1.0  # a reset (flagged) ...
        status[reset_at] = SEMANTICS_CHANGED
        energy = np.where(energy >= 1000.0, energy % 1000.0, energy)  # ... and rollovers of a 1000-kWh register
        state = np.where(power > 22, 2, np.where(power > 5, 1, 0)).astype(float)
        state[4000:4010] = 3
        good = np.cumsum(rng.integers(0, 3, len(t))).astype(float)
        for measurement, field, values, codes in (("electrical", "active_power_kw", power, None),
                                                  ("electrical", "energy_kwh", energy, status),
                                                  ("machine_state", "state", state, None),
                                                  ("production", "good_count", good, None)):
            store.write_arrays(SeriesKey.of(measurement, tags, field), t[keep], values[keep],
                               None if codes is None else codes[keep], bulk=bulk)
    store.flush()


def _read(store: SQLiteStore, fast: bool, monkeypatch, **kwargs) -> pd.DataFrame:
    monkeypatch.setattr(q, "FAST_RAW", fast)
    monkeypatch.setattr(q, "FAST_WIDE", fast)
    frames = list(store.read_frame(COLUMNS, START + 7 * MIN, START + DAYS * 86400 * NS, **kwargs))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("bulk", [False, True], ids=["rows", "chunks"])
@pytest.mark.parametrize("every,tz", [(900, "UTC"), (3600, "Europe/Berlin"), ("1d", "Europe/Berlin")])
def test_fast_path_gives_the_reference_answer(tmp_path, monkeypatch, bulk, every, tz):
    store = SQLiteStore(tmp_path / "plant.db")
    try:
        _write_plant(store, bulk, seed=3)
        assert sqlite_frame.supports(store)
        kwargs = {"every": every, "tz": tz, "chunk_s": 2 * 86400}
        reference_joins = []
        join = q.wide_frame_reference
        monkeypatch.setattr(q, "wide_frame_reference", lambda *a: reference_joins.append(1) or join(*a))
        fast = _read(store, True, monkeypatch, **kwargs)
        assert not reference_joins  # the numpy join answered every chunk
        reference = _read(store, False, monkeypatch, **kwargs)
        # the data has what the comparison is about: rollovers and resets counted, gaps, all states
        assert len(reference) > 0 and reference["reg"].notna().any()
        assert reference["s_fault"].gt(0).any()
        assert every == "1d" or reference["power_mean_kw"].isna().any()  # a whole window in the gap
        pd.testing.assert_frame_equal(fast, reference, check_exact=True)
        # tag filters (a subset of machines) narrow both paths alike
        sub = {**kwargs, "tags": {"machine": ["m1", "m3"]}}
        a, b = _read(store, True, monkeypatch, **sub), _read(store, False, monkeypatch, **sub)
        assert set(a["machine"]) == {"m1", "m3"}
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    finally:
        store.close()


def test_read_split_matches_query_split(tmp_path):
    """Series by series, including a range with no data and one cut inside the missing values."""
    store = SQLiteStore(tmp_path / "plant.db")
    try:
        _write_plant(store, False, seed=5)
        for lo, hi in ((START, START + 86400 * NS), (START + 1100 * MIN, START + 1150 * MIN),
                       (START - 86400 * NS, START)):
            for measurement, field in (("electrical", "energy_kwh"), ("machine_state", "state")):
                fast = sqlite_frame.read_split(store, measurement, field, lo, hi, None)
                reference = q._split(store.query(measurement, field, lo, hi))
                assert fast.keys() == reference.keys()
                for key, arrays in reference.items():
                    for x, y in zip(fast[key], arrays):
                        np.testing.assert_array_equal(x, y)
    finally:
        store.close()


def test_long_frame_is_sorted_as_pandas_sorts_it():
    """_long_frame orders rows in numpy; the reference is the frame sorted by pandas (tags, time, state), with a
    missing tag last and series in scrambled order."""
    rng = np.random.default_rng(7)
    keys = [(("line", "L2"), ("machine", "b")), (("line", "L1"), ("machine", "b")), (("machine", "a"),),
            (("line", "L1"), ("machine", "a")), (("line", "L10"), ("machine", "Z"))]
    rows = []
    for key in keys:
        for state in (2, 0, 1):
            t = np.sort(rng.choice(np.arange(50) * 900 * NS, size=20, replace=False))
            rows.append((key, t, rng.normal(size=20), state))
    got = q._long_frame(rows, True)
    tag_names = ["line", "machine"]
    reference = pd.DataFrame({
        "time": pd.to_datetime(np.concatenate([r[1] for r in rows]), unit="ns", utc=True),
        **{n: np.repeat(np.array([dict(r[0]).get(n) for r in rows], dtype=object), [len(r[1]) for r in rows])
           for n in tag_names},
        "state": np.repeat([r[3] for r in rows], [len(r[1]) for r in rows]).astype(np.int64),
        "value": np.concatenate([r[2] for r in rows]),
    }).sort_values([*tag_names, "time", "state"], kind="stable").reset_index(drop=True)
    assert got["machine"].iloc[-1] == "a" and pd.isna(got["line"].iloc[-1])  # the series without a line comes last
    pd.testing.assert_frame_equal(got, reference, check_exact=True)


def test_wide_frame_falls_back_where_series_share_tags(tmp_path, monkeypatch):
    """Two series per machine (a second line tag) summed by ``by=("machine",)``: the numpy join hands over to the
    reference, which sums the additive columns; both settings give the same frame."""
    store = SQLiteStore(tmp_path / "plant.db")
    try:
        _write_plant(store, False, seed=9)
        columns = [c for c in COLUMNS if c.agg in ("increase", "integral", "state_seconds")]
        frames = {}
        for fast in (True, False):
            monkeypatch.setattr(q, "FAST_RAW", fast)
            monkeypatch.setattr(q, "FAST_WIDE", fast)
            frames[fast] = pd.concat(list(store.read_frame(columns, START, START + 2 * 86400 * NS, every=3600,
                                                           by=("site",))), ignore_index=True)
        assert set(frames[True]["site"]) == {"north"} and len(frames[True]) == 48
        pd.testing.assert_frame_equal(frames[True], frames[False], check_exact=True)
    finally:
        store.close()


def test_reads_continued_with_a_carry_give_one_read_s_answer(tmp_path, monkeypatch):
    """A follower's reads, window by window with the carry of the previous read, give what one read of the whole range
    gives (through the meter gap, the silence, the register reset and rollovers), and look no previous value up in
    the store after the first read; a carry from a read that ended elsewhere is not used."""
    store = SQLiteStore(tmp_path / "plant.db")
    try:
        _write_plant(store, False, seed=5)
        lo, hi = START + 7 * MIN, START + DAYS * 86400 * NS
        whole = pd.concat(list(store.read_frame(COLUMNS, lo, hi, every=900)), ignore_index=True)
        # Cuts at window edges: long reads, then single windows across the silence (minutes 3000-3500).
        w = 900 * NS
        edges = list(range(START + 40 * w, START + 190 * w, 37 * w)) + list(range(START + 190 * w, START + 250 * w, w))
        cuts = [lo, *edges, hi]
        looked_up = []
        neighbours = q._neighbours
        monkeypatch.setattr(q, "_neighbours", lambda *a, **k: looked_up.append(k["after"]) or neighbours(*a, **k))
        carry: dict = {}
        parts = []
        for k, (a, b) in enumerate(itertools.pairwise(cuts)):
            looked_up.clear()
            parts.extend(store.read_frame(COLUMNS, a, b, every=900, carry=carry))
            assert carry["until_ns"] == b
            if k > 0:
                assert False not in looked_up  # no look-up of a previous value
        def ordered(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.sort_values(["site", "line", "machine", "time"], kind="stable").reset_index(drop=True)

        pieces = pd.concat([p for p in parts if not p.empty], ignore_index=True)
        pd.testing.assert_frame_equal(ordered(pieces), ordered(whole))
        # A carry that does not end at the read's start is ignored (the answer is looked up, the same).
        looked_up.clear()
        again = pd.concat(list(store.read_frame(COLUMNS, cuts[5], hi, every=900, carry=carry)), ignore_index=True)
        assert False in looked_up
        pd.testing.assert_frame_equal(ordered(again), ordered(whole[whole["time"] >= pd.Timestamp(cuts[5], tz="UTC")]))
    finally:
        store.close()


@pytest.mark.parametrize("bulk", [False, True], ids=["rows", "chunks"])
def test_short_reads_compute_min_max_last_from_raw_points_as_the_windowed_query_does(tmp_path, monkeypatch, bulk):
    """Up to RAW_WINDOWS_MAX_S, min, max and last come from the raw points (frame-free), not the store's windowed
    query over its rollups: the same values, for aligned and unaligned short ranges, across the silence and a register
    reset, in both layouts."""
    store = SQLiteStore(tmp_path / "plant.db")
    columns = [Column("power_max_kw", "electrical", "active_power_kw", "max"),
               Column("register_min_kwh", "electrical", "energy_kwh", "min"),
               Column("register_last_kwh", "electrical", "energy_kwh", "last")]
    try:
        _write_plant(store, bulk, seed=9)
        windowed = []
        query = store.query
        monkeypatch.setattr(store, "query", lambda *a, **k: windowed.append(k.get("window_s")) or query(*a, **k))
        w = 900 * NS
        for lo, hi, every, tz in [(START + 66 * w, START + 67 * w, 900, "UTC"),
                                  (START + 400 * MIN + 7 * NS, START + 590 * MIN, 900, "UTC"),
                                  (START + 2990 * MIN, START + 3290 * MIN, 3600, "Europe/Berlin"),
                                  (START + 2400 * MIN, START + 2700 * MIN + 30 * NS, 300, "UTC")]:
            monkeypatch.setattr(q, "FAST_RAW", True)
            windowed.clear()
            fast = pd.concat(list(store.read_frame(columns, lo, hi, every=every, tz=tz)), ignore_index=True)
            assert not [x for x in windowed if x is not None]  # no windowed query
            monkeypatch.setattr(q, "FAST_RAW", False)
            reference = pd.concat(list(store.read_frame(columns, lo, hi, every=every, tz=tz)), ignore_index=True)
            assert len(fast) and fast[columns[0].name].notna().any()
            pd.testing.assert_frame_equal(fast, reference)
    finally:
        store.close()
