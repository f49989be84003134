"""Raw reads of the embedded store straight into per-series arrays, for :mod:`core.storage.query`.

``core.storage.query`` reads raw points of many series per chunk and immediately cuts them into arrays per series.
Going through ``SQLiteStore.query`` builds a pandas frame first (tag columns as strings, times as datetimes) only to
take it apart again, which cost more than the arithmetic; here the same rows and chunks
(``SQLiteStore._merged_raw``) are cut by series id and keyed by the series' tags, with no frame in between. The answer
is the same as ``query._split(store.query(...))`` (tests/storage/test_read_frame_fast.py compares them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeGuard

import numpy as np

NS = 1_000_000_000

if TYPE_CHECKING:
    from core.storage.base import Store, TagFilter
    from core.storage.sqlite import SQLiteStore


def supports(store: Store) -> TypeGuard[SQLiteStore]:
    """Whether ``store`` is an embedded SQLite store (whose raw reads :func:`read_split` answers)."""
    from core.storage.sqlite import SQLiteStore

    return isinstance(store, SQLiteStore)


def _matching(store: SQLiteStore, measurement: str, field: str, tags: TagFilter | None) -> list[int]:
    """Series ids matching the filter, as ``core.storage.base.match_tags`` matches them, with each list of accepted
    values made a set once (matching rebuilt it per series: 20,000 material series x a list of 20,000 ids)."""
    sids = store._matching_series(measurement, field, None)
    if not tags:
        return sids
    wanted = tuple((k, v if isinstance(v, str) else frozenset(v)) for k, v in tags.items())
    # The same filter is matched again for every time chunk of a read: remembered per store for the series known.
    memo = store.__dict__.setdefault("_frame_matching", {})
    known = (measurement, field, wanted, len(sids), sids[-1] if sids else None)
    if known in memo:
        return memo[known]
    out = []
    for sid in sids:
        have = store._keys[sid].tag_dict
        if all(have.get(k) == v if isinstance(v, str) else have.get(k) in v for k, v in wanted):
            out.append(sid)
    if len(memo) > 64:
        memo.clear()
    memo[known] = out
    return out


#: The raw reads remembered inside :func:`shared_raw_reads` (per thread and task, like the block that set it):
#: ``{(store id, series ids, lo, hi): arrays}``.
_RAW_MEMO: ContextVar[dict | None] = ContextVar("wattline_raw_memo", default=None)


@contextmanager
def shared_raw_reads(store: Store) -> Iterator[None]:
    """Within the block, raw reads of the embedded store of the same series and range are answered once (one chunk of
    a ``read_frame``: power read raw for its integral, time-weighted mean and maximum, the energy register for its
    increase, lowest and last reading); a no-op for other stores."""
    if not supports(store) or _RAW_MEMO.get() is not None:
        yield
        return
    token = _RAW_MEMO.set({})
    try:
        yield
    finally:
        _RAW_MEMO.reset(token)


def _merged_raw(store: SQLiteStore, conn, ids: str, lo: int, hi: int):
    """``store._merged_raw``, remembered inside :func:`shared_raw_reads` (a range inside one read already is cut
    from it)."""
    memo = _RAW_MEMO.get()
    if memo is None:
        return store._merged_raw(conn, ids, lo, hi)
    key = (id(store), ids, lo, hi)
    if key not in memo:
        covering = _covering(memo, key)
        if covering is not None:
            sid, ts, value, status = memo[covering]
            keep = (ts >= lo) & (ts < hi)  # rows stay sorted by (series, time)
            arrays = (sid[keep], ts[keep], value[keep], status[keep])
        else:
            arrays = store._merged_raw(conn, ids, lo, hi)
        for a in arrays:
            a.setflags(write=False)  # shared by the readers: none may change them
        memo[key] = arrays
    return memo[key]


def _covering(memo: dict, key: tuple) -> tuple | None:
    """A remembered read of the same store and series whose range holds ``key``'s range, or None."""
    store_id, ids, lo, hi = key
    for other in memo:
        if other[0] == store_id and other[2] <= lo and other[3] >= hi and other[1] == ids:
            return other
    return None


def raw_read_shared(store: Store, measurement: str, field: str, tags: TagFilter | None, lo: int, hi: int) -> bool:
    """Whether, inside :func:`shared_raw_reads`, the raw points of these series in ``[lo, hi)`` were read already
    (then windows computed from them cost less than the windowed query over the rollups and its frame)."""
    memo = _RAW_MEMO.get()
    if not memo or not supports(store):
        return False
    sids = _matching(store, measurement, field, tags)
    return bool(sids) and _covering(memo, (id(store), json.dumps(sids), int(lo), int(hi))) is not None


def _key(series_key) -> tuple:
    """The series' key in ``query._split``'s form: sorted (tag, value) pairs without absent values."""
    return tuple(sorted((k, v) for k, v in series_key.tags if v is not None and v != ""))


def read_split(store: SQLiteStore, measurement: str, field: str, lo: int, hi: int,
               tags: TagFilter | None) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Raw values in ``[lo, hi)`` [ns] of every matching series: ``{key: (times [ns], values, status)}`` in time
    order, values NaN where stored as missing (the form of ``core.storage.query._split``)."""
    from core.storage.sqlite import _snapshot

    sids = _matching(store, measurement, field, tags)
    if not sids:
        return {}
    conn = store._conn()
    with _snapshot(conn):
        sid, ts, value, status = _merged_raw(store, conn, json.dumps(sids), int(lo), int(hi))
    return _by_series(store, sid, ts, value, status)


def read_windows_split(store: SQLiteStore, measurement: str, field: str, pieces: list[tuple[int, int, int]],
                       tags: TagFilter | None, agg: str) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``agg`` (min, max or last) of the raw values in epoch-aligned windows, per piece ``(lo [ns], hi [ns], window
    [s])``, of every matching series: the form of ``query._split`` of ``SQLiteStore.query(..., window_s, agg)`` over
    the pieces, computed from the raw points (``sqlite_chunks.window_rows``, as the store aggregates its chunks)
    without the windowed SQL and its frame. For short ranges (a follower's newest window), and for ranges whose raw
    points a read has in hand (:func:`raw_read_shared`)."""
    from core.storage import sqlite_chunks as ck
    from core.storage.sqlite import _snapshot

    if agg not in ("min", "max", "last"):
        raise ValueError(f"read_windows_split answers min, max and last, not {agg!r}")
    sids = _matching(store, measurement, field, tags)
    if not sids:
        return {}
    conn = store._conn()
    ids = json.dumps(sids)
    found = []
    with _snapshot(conn):
        for lo, hi, w in pieces:
            if hi > lo:
                sid, ts, value, _ = _merged_raw(store, conn, ids, int(lo), int(hi))
                found.append(ck.window_rows(sid, ts, value, int(w) * NS, agg))
    if not found:
        return {}
    sid = np.concatenate([f["series_id"] for f in found]).astype(np.int64, copy=False)
    ts = np.concatenate([f["ts"] for f in found]).astype(np.int64, copy=False)
    value = np.concatenate([f["value"] for f in found]).astype(float, copy=False)
    order = np.lexsort((ts, sid))
    return _by_series(store, sid[order], ts[order], value[order], np.zeros(len(sid), dtype=np.int64))


def _by_series(store: SQLiteStore, sid: np.ndarray, ts: np.ndarray, value: np.ndarray,
               status: np.ndarray) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Arrays sorted by (series id, time) cut into ``{key: (times, values, status)}`` (``query._split``'s form)."""
    if not len(sid):
        return {}
    cut = np.flatnonzero(np.diff(sid)) + 1
    starts = np.concatenate([[0], cut])
    ends = np.append(cut, len(sid))
    ts = ts.astype(np.int64, copy=False)
    value = value.astype(float, copy=False)
    status = status.astype(np.int64, copy=False)
    # A series' key in query._split's form, made once per series id and store (a read of thousands of material
    # series asks for the same keys in every chunk).
    keys = store.__dict__.setdefault("_frame_keys", {})
    out: dict = {}
    for a, b in zip(starts.tolist(), ends.tolist()):
        s_id = int(sid[a])
        key = keys.get(s_id)
        if key is None:
            key = keys[s_id] = _key(store._keys[s_id])
        if key in out:  # series differing only in an empty tag are one series to the query layer
            t0, v0, s0 = out[key]
            t1, v1, s1 = (np.concatenate([t0, ts[a:b]]), np.concatenate([v0, value[a:b]]),
                          np.concatenate([s0, status[a:b]]))
            order = np.argsort(t1, kind="stable")
            out[key] = (t1[order], v1[order], s1[order])
        else:
            out[key] = (ts[a:b], value[a:b], status[a:b])
    return out
