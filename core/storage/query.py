"""Energy queries any :class:`~core.storage.base.Store` answers: local-time windows, counter increases, time-weighted
and state aggregations, and aligned multi-column frames read in time chunks.

Built only on the backends' own ``query`` (raw points, or epoch-aligned windows from their rollups), so SQLite,
InfluxDB and a store behind a writer process give the same answers; the arithmetic is :mod:`core.storage.intervals`.

- mean, sum, min, max, last, count: the store's windowed query at the largest step that divides every local window
  edge (daily windows in Europe/Berlin from 1-h buckets, hours in Asia/Kolkata from 30-min ones, so from the 15-min
  rollup), combined per local window; a year of daily windows never reads raw points.
- increase, twmean, integral, state_seconds: raw points in time chunks (``chunk_s``), each chunk with the last value
  of every series before it and, for counters, the first one after it, so that the answer does not depend on the
  chunking.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import StoreError
from core.model import MACHINE_STATES
from core.storage import intervals as iv
from core.storage.base import AGGREGATIONS, ENERGY_AGGREGATIONS, ROLLUP_RESOLUTIONS_S

if TYPE_CHECKING:
    import pandas as pd

    from core.storage.base import Column, Store, TagFilter, TimeLike

NS = iv.NS
HOUR_NS = 3600 * NS

#: Aggregations whose values of several series add up (read_frame sums series sharing the ``by`` tags).
ADDITIVE = frozenset({"sum", "count", "increase", "integral", "state_seconds"})

#: How far back (and, for counters, ahead) a chunk looks for a series' neighbouring value [s]: a value holds at most
#: this long, and a counter step across a longer gap is not spread.
LOOKBACK_S = 35 * 86400

#: Time chunk of raw reads [s].
DEFAULT_CHUNK_S = 7 * 86400

_NOT_TAGS = ("time", "value", "status", "state")

#: Set by read_frame around its columns' reads: _long_frame gives tag columns as categoricals (codes into the distinct
#: values, the values' own string dtype as categories), which only wide_frame sees; it returns the same frame as from
#: string columns.
_CODED_TAGS: ContextVar[bool] = ContextVar("wattline_coded_tags", default=False)

#: Use the backends' frame-free raw reads (False: the reference path through ``Store.query``; tests compare both).
FAST_RAW = True
#: min, max and last over a range up to this long [s] (a follower's newest windows) are computed from the embedded
#: store's raw points (the same windows as its rollups give) instead of its windowed query and frame.
RAW_WINDOWS_MAX_S = 6 * 3600


# -- helpers over query frames -----------------------------------------------------------------------------------------
def _times(frame: pd.DataFrame) -> np.ndarray:
    return frame["time"].dt.as_unit("ns").astype("int64").to_numpy()


def _tag_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in _NOT_TAGS]


def _absent(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value))


def _split(frame: pd.DataFrame) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per series (key: sorted (tag, value) pairs) its times [ns], values and status, in time order."""
    if frame is None or frame.empty:
        return {}
    cols = _tag_columns(frame)
    t = _times(frame)
    v = frame["value"].to_numpy(dtype=float)
    s = frame["status"].to_numpy(dtype=np.int64) if "status" in frame else np.zeros(len(frame), dtype=np.int64)
    # Query results come sorted by series: cut them where a tag changes (much cheaper than a groupby on strings).
    tags = [frame[c].to_numpy(dtype=object) for c in cols]
    change = np.zeros(len(frame), dtype=bool)
    change[0] = True
    for a in tags:
        change[1:] |= a[1:] != a[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(frame))
    out: dict = {}
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        key = tuple(sorted((c, a[lo]) for c, a in zip(cols, tags) if not _absent(a[lo])))
        if key in out:  # the same series in several runs (a missing tag given as NaN, or an unsorted frame)
            ot, ov, os_ = out[key]
            out[key] = (np.concatenate([ot, t[lo:hi]]), np.concatenate([ov, v[lo:hi]]), np.concatenate([os_, s[lo:hi]]))
        else:
            out[key] = (t[lo:hi], v[lo:hi], s[lo:hi])
    for key, (tt, vv, ss) in out.items():
        if len(tt) > 1 and (np.diff(tt) < 0).any():
            order = np.argsort(tt, kind="stable")
            out[key] = (tt[order], vv[order], ss[order])
    return out


def _raw(store: Store, measurement: str, field: str, lo: int, hi: int,
         tags: TagFilter | None) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Raw points of ``[lo, hi)`` per series (the form of :func:`_split`); the embedded store answers without
    building a frame (:mod:`core.storage.sqlite_frame`, the same answer)."""
    if hi > lo and FAST_RAW:
        from core.storage import sqlite_frame

        if sqlite_frame.supports(store):
            return sqlite_frame.read_split(store, measurement, field, lo, hi, tags)
    return _split(store.query(measurement, field, lo, hi, tags=tags))


def _narrowed(tags: TagFilter | None, keys: Sequence[tuple]) -> dict:
    """A tag filter that selects (a small superset of) the series ``keys``, within ``tags``."""
    narrowed: dict = dict(tags or {})
    names = set.intersection(*(set(dict(k)) for k in keys)) if keys else set()
    for name in names:
        narrowed[name] = sorted({dict(k)[name] for k in keys})
    return narrowed


def _neighbours(store: Store, measurement: str, field: str, t_ns: int, tags: TagFilter | None, limit_ns: int,
                after: bool, finite: bool, wanted: set | None = None) -> dict[tuple, tuple[int, float, int]]:
    """The last stored value before ``t_ns`` (or, with ``after``, the first at or after it) of every series, looking at
    most ``limit_ns`` away: ``{key: (time_ns, value, status)}``. With ``finite``, missing values are passed over; with
    ``wanted``, only those series are looked for beyond the nearest hours.

    Reads raw points of the nearest 1-2 h; further away, a windowed count (answered from rollups) finds the day that
    holds each remaining series' neighbour, and only that part is read raw.
    """
    found: dict[tuple, tuple[int, float, int]] = {}

    def take(parts: dict) -> None:
        for key, (t, v, s) in parts.items():
            if key in found:
                continue
            ok = np.flatnonzero(np.isfinite(v)) if finite else np.arange(len(t))
            if len(ok):
                i = ok[0] if after else ok[-1]
                found[key] = (int(t[i]), float(v[i]), int(s[i]))

    if limit_ns <= 0:
        return found
    if after:
        near = min(iv.floor_to(t_ns, HOUR_NS) + 2 * HOUR_NS, t_ns + limit_ns)
        take(_raw(store, measurement, field, t_ns, near, tags))
        far_lo, far_hi = near, -(-(t_ns + limit_ns) // HOUR_NS) * HOUR_NS
    else:
        near = max(iv.floor_to(t_ns, HOUR_NS) - HOUR_NS, t_ns - limit_ns)
        take(_raw(store, measurement, field, near, t_ns, tags))
        far_lo, far_hi = iv.floor_to(t_ns - limit_ns, HOUR_NS), near
    covered = near >= t_ns + limit_ns if after else near <= t_ns - limit_ns  # the raw read reached the limit
    if covered or far_hi <= far_lo or (wanted is not None and wanted <= set(found)):
        return found
    # Which series have present values further away, and on which day (from the 1-h rollups)?
    counts = store.query(measurement, field, far_lo, far_hi, tags=tags, window_s=86400, agg="count")
    days: dict[tuple, int] = {}
    for key, (t, v, _) in _split(counts).items():
        if key in found or (wanted is not None and key not in wanted):
            continue
        has = t[v > 0]
        if len(has):
            days[key] = int(has.min() if after else has.max())
    if days:
        keys = list(days)
        if after:
            lo, hi = far_lo, min(max(days.values()) + 86400 * NS, far_hi)
        else:
            lo, hi = max(min(days.values()), far_lo), far_hi
        more = _raw(store, measurement, field, lo, hi, _narrowed(tags, keys))
        take({k: more[k] for k in keys if k in more})
    return {k: x for k, x in found.items() if (x[0] < t_ns + limit_ns if after else x[0] >= t_ns - limit_ns)}


def _long_frame(rows: Sequence[tuple[tuple, np.ndarray, np.ndarray, object]], with_state: bool) -> pd.DataFrame:
    """Assemble ``(key, window starts [ns], values, state)`` pieces into the long result frame."""
    import pandas as pd

    tag_names = sorted({name for key, *_ in rows for name, _ in key})
    if not rows:
        columns = ["time", *(["state"] if with_state else []), "value"]
        frame = pd.DataFrame({c: [] for c in columns})
        frame["time"] = pd.to_datetime(frame["time"], utc=True).dt.as_unit("ns")
        return frame
    # Sorted by (tags, time, state) in numpy before the frame is built (sorting the frame's string columns cost more
    # than building it): pieces ranked by their tag values (a missing tag last, as pandas sorts), then by time.
    sizes = [len(r[1]) for r in rows]
    values = [tuple(dict(r[0]).get(name) for name in tag_names) for r in rows]
    ranked = sorted(set(values), key=lambda vs: [(v is None, "" if v is None else v) for v in vs])
    position = {vs: i for i, vs in enumerate(ranked)}
    rank = np.array([position[vs] for vs in values], dtype=np.int64)
    times = np.concatenate([np.asarray(r[1], dtype=np.int64) for r in rows])
    states = np.repeat(np.array([r[3] if with_state else 0 for r in rows], dtype=np.int64), sizes)
    piece = np.repeat(np.arange(len(rows)), sizes)
    if not with_state and _in_order(rank, piece, times):
        order = None  # pieces of distinct series come ranked, each in time order: the sort would change nothing
    else:
        order = np.lexsort((states, times, np.repeat(rank, sizes)))
        times, states, piece = times[order], states[order], piece[order]
    data: dict = {"time": pd.to_datetime(times, unit="ns", utc=True)}
    coded = _CODED_TAGS.get()
    for j, name in enumerate(tag_names):
        # per piece, then taken row by row (converting a row-long object array to strings cost most of the frame)
        per_piece = pd.Series(np.array([v[j] for v in values], dtype=object))
        if coded and per_piece.dtype != object and not per_piece.isna().any():
            # inside read_frame: codes into the pieces' distinct values (wide_frame joins on them and builds the
            # strings once per output row), not a string per long row for every column
            code, uniques = pd.factorize(per_piece)
            data[name] = pd.Categorical.from_codes(code[piece], categories=uniques)
        else:
            data[name] = per_piece.take(piece).reset_index(drop=True)
    if with_state:
        data["state"] = states
    value = np.concatenate([np.asarray(r[2]) for r in rows])
    data["value"] = value if order is None else value[order]
    return pd.DataFrame(data)


def _in_order(rank: np.ndarray, piece: np.ndarray, times: np.ndarray) -> bool:
    """Whether rows of pieces (``piece``: each row's piece) are sorted by (rank, time) already: every piece ranks
    after the one before it, and times rise within each piece."""
    if len(rank) > 1 and not (np.diff(rank) > 0).all():
        return False
    if len(times) < 2:
        return True
    return bool(((times[1:] >= times[:-1]) | (piece[1:] != piece[:-1])).all())


# -- aggregate ---------------------------------------------------------------------------------------------------------
def chunk_bounds(edges: np.ndarray, chunk_ns: int) -> list[tuple[int, int]]:
    """Split windows into runs of about ``chunk_ns`` (at least one window each): ``[(first edge, last edge)]``."""
    out, i, last = [], 0, len(edges) - 1
    while i < last:
        j = int(np.searchsorted(edges, edges[i] + chunk_ns, side="right")) - 1
        j = min(max(j, i + 1), last)
        out.append((i, j))
        i = j
    return out


def _check(agg: str, field: str, max_hold_s) -> None:
    if agg not in AGGREGATIONS + ENERGY_AGGREGATIONS:
        raise StoreError(f"unknown aggregation {agg!r}; valid: {', '.join(AGGREGATIONS + ENERGY_AGGREGATIONS)}")
    if not field:
        raise StoreError("a query needs a field name")
    if max_hold_s is not None and not max_hold_s > 0:
        raise StoreError(f"max_hold_s must be a positive number of seconds, got {max_hold_s!r}")


def aggregate(store: Store, measurement: str, field: str, start: TimeLike, stop: TimeLike, *, every: int | str,
              agg: str, tags: TagFilter | None = None, tz: str = "UTC", register_max: float | None = None,
              max_hold_s: float | None = None, chunk_s: int = DEFAULT_CHUNK_S) -> pd.DataFrame:
    """Aggregate one field into windows in local time; see :meth:`core.storage.base.Store.aggregate`.

    Each chunk is one ``store._aggregate_part`` call (a writer process answers it next to the data), carrying the
    series' last values from chunk to chunk.
    """
    _check(agg, field, max_hold_s)
    start_ns, stop_ns = store._range_ns(start, stop)
    kwargs = {"every": every, "agg": agg, "tags": tags, "tz": tz, "register_max": register_max,
              "max_hold_s": max_hold_s}
    if agg in AGGREGATIONS:
        return store._aggregate_part(measurement, field, start_ns, stop_ns, **kwargs)[0]
    edges = iv.window_edges(start_ns, stop_ns, every, tz)
    parts, carry = [], None
    for i, j in chunk_bounds(edges, int(chunk_s) * NS):
        lo, hi = max(int(edges[i]), start_ns), min(int(edges[j]), stop_ns)
        frame, carry = store._aggregate_part(measurement, field, lo, hi, before=carry, **kwargs)
        parts.append(frame)
    return concat_parts(parts)


def concat_parts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate the answers for consecutive sub-ranges (empty ones dropped; one empty frame if all are)."""
    import pandas as pd

    full = [p for p in parts if not p.empty] or parts[:1]
    if not full:
        return _long_frame([], False)
    return full[0] if len(full) == 1 else pd.concat(full, ignore_index=True)


def aggregate_part(store: Store, measurement: str, field: str, lo: int, hi: int, *, every: int | str, agg: str,
                   tags: TagFilter | None = None, tz: str = "UTC", register_max: float | None = None,
                   max_hold_s: float | None = None, before: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Aggregate ``[lo, hi)`` (window edges, or the ends of the whole range).

    Parameters
    ----------
    before : dict, optional
        ``{series key: (time_ns, value, status)}``, the last value of every series before ``lo`` (the previous
        chunk's answer); looked up in the store when omitted.

    Returns
    -------
    tuple
        The long frame, and the last values at ``hi`` in the form of ``before`` (for the next chunk; empty for the
        windowed aggregations).
    """
    rows, with_state, last = part_rows(store, measurement, field, lo, hi, every=every, agg=agg, tags=tags, tz=tz,
                                       register_max=register_max, max_hold_s=max_hold_s, before=before)
    return _long_frame(rows, with_state), last


def part_rows(store: Store, measurement: str, field: str, lo: int, hi: int, *, every: int | str, agg: str,
              tags: TagFilter | None = None, tz: str = "UTC", register_max: float | None = None,
              max_hold_s: float | None = None, before: dict | None = None) -> tuple[list[tuple], bool, dict]:
    """:func:`aggregate_part` before its long frame is built: the pieces ``(series key, window starts [ns], values,
    state code or None)``, whether they are state seconds, and the last values at ``hi``."""
    _check(agg, field, max_hold_s)
    edges = iv.window_edges(lo, hi, every, tz)
    if agg in AGGREGATIONS:
        return _from_windows(store, measurement, field, lo, hi, edges, agg, tags), False, {}
    rows, last = _from_raw(store, measurement, field, lo, hi, edges, agg, tags, register_max, max_hold_s, before)
    return rows, agg == "state_seconds", last


def _from_raw(store, measurement, field, lo, hi, edges, agg, tags, register_max, max_hold_s, before):
    """One chunk ``[lo, hi)`` of windows ``edges`` (the first and last clipped to it) from raw points."""
    clipped = edges.copy()
    clipped[0], clipped[-1] = lo, hi
    labels = edges[:-1]
    # No value holds longer than LOOKBACK_S: the answer is then the same whatever the chunking.
    hold = LOOKBACK_S if max_hold_s is None else min(float(max_hold_s), LOOKBACK_S)
    if agg == "increase":
        keys, dense, last = _counter_chunk(store, measurement, field, lo, hi, clipped, tags, register_max, before)
        rows = []
        for key, values in zip(keys, dense):
            ok = np.isfinite(values)
            if ok.any():
                rows.append((key, labels[ok], values[ok], None))
        return rows, last
    data = _raw(store, measurement, field, lo, hi, tags)
    if before is None:
        before = _neighbours(store, measurement, field, lo, tags, int(hold) * NS, after=False, finite=False)
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64))
    rows, last = [], dict(before)
    for key in sorted(set(data) | set(before)):
        t, v, s = data.get(key, empty)
        prev = before.get(key)
        if len(t):
            last[key] = (int(t[-1]), float(v[-1]), int(s[-1]))
        p = None if prev is None else prev[:2]
        if agg in ("twmean", "integral"):
            values = iv.time_weighted(t, v, clipped, prev=p, max_hold_s=hold, integral=agg == "integral")
            ok = np.isfinite(values)
            if ok.any():
                rows.append((key, labels[ok], values[ok], None))
        else:
            for code, seconds in iv.state_seconds(t, v, clipped, prev=p, max_hold_s=hold).items():
                ok = seconds > 0
                rows.append((key, labels[ok], seconds[ok], code))
    return rows, last


def _counter_chunk(store, measurement, field, lo, hi, clipped, tags, register_max, before, sparse=False, data=None,
                   after=None):
    """Counter increases of every series in one chunk ``[lo, hi)`` over the windows ``clipped``, all series at once
    (:func:`core.storage.intervals.counter_increase_many`): each series' raw readings (``data``, or read) with its last
    finite reading before the chunk (``before``, or looked up) and its first one after it (``after``, or looked up),
    each at most :data:`LOOKBACK_S` away.

    Returns
    -------
    tuple
        The series keys (sorted), the increases (dense: one row per key; sparse: ``(key index, window index,
        increase)`` of the windows a non-zero step overlaps) and the last finite readings at ``hi`` (the next chunk's
        ``before``).
    """
    if data is None:
        data = _raw(store, measurement, field, lo, hi, tags)
    if before is None:
        before = _neighbours(store, measurement, field, lo, tags, LOOKBACK_S * NS, after=False, finite=True)
    if after is None:
        after = _neighbours(store, measurement, field, hi, tags, LOOKBACK_S * NS, after=True, finite=True,
                            wanted=set(data) | set(before))
    keys = sorted(set(data) | set(before))
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64))
    pieces: list[tuple] = []
    sizes: list[int] = []
    last = dict(before)
    for key in keys:
        t, v, s = data.get(key, empty)
        if len(t):
            ok = np.flatnonzero(np.isfinite(v))
            if len(ok):
                last[key] = (int(t[ok[-1]]), float(v[ok[-1]]), int(s[ok[-1]]))
        pre, post = before.get(key), after.get(key)
        if pre is not None:
            pieces.append(([pre[0]], [pre[1]], [pre[2]]))
        pieces.append((t, v, s))
        if post is not None:
            pieces.append(([post[0]], [post[1]], [post[2]]))
        sizes.append((pre is not None) + len(t) + (post is not None))
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    t_all = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in pieces]) if pieces else np.zeros(0, np.int64)
    v_all = np.concatenate([np.asarray(p[1], dtype=float) for p in pieces]) if pieces else np.zeros(0)
    s_all = np.concatenate([np.asarray(p[2], dtype=np.int64) for p in pieces]) if pieces else np.zeros(0, np.int64)
    result = iv.counter_increase_many(t_all, v_all, offsets, clipped, register_max, status=s_all, sparse=sparse)
    return keys, result, last


def _first_finite(parts: dict, wanted, found: dict, until_ns: int) -> None:
    """Add to ``found`` each wanted series' first finite reading in ``parts`` (raw reads in time order) before
    ``until_ns``."""
    for key in wanted:
        if key in found or key not in parts:
            continue
        t, v, s = parts[key]
        ok = np.flatnonzero(np.isfinite(v) & (t < until_ns))
        if len(ok):
            i = ok[0]
            found[key] = (int(t[i]), float(v[i]), int(s[i]))


def read_increases(store: Store, measurement: str, field: str, start: TimeLike, stop: TimeLike, *, every: int | str,
                   tz: str = "UTC", tags: TagFilter | None = None, register_max: float | None = None,
                   chunk_s: int = DEFAULT_CHUNK_S) -> Iterator[tuple[list[tuple], np.ndarray, np.ndarray, np.ndarray]]:
    """The non-zero counter increases of many series per window, one time chunk at a time, without the rows of the
    windows where a counter stood still (``aggregate(..., agg="increase")`` gives those as 0).

    For thousands of mostly idle counters (material consumed per material id) this is what a reader wants: the
    same values as ``aggregate``/``read_frame`` give in those windows, at a cost that grows with the steps, not with
    series x windows. Each stretch is read raw once: the first reading after a chunk is found in the raw reads of
    the chunks after it (read ahead up to :data:`LOOKBACK_S`), not looked up series by series.

    Yields
    ------
    tuple
        ``(keys, key index, window start [ns], increase)`` per chunk: the series keys (sorted (tag, value) pairs), and
        per window a non-zero step of a series overlaps, its key's index, the window's start and the increase
        [counter unit]; ordered by key and time.
    """
    start_ns, stop_ns = store._range_ns(start, stop)
    edges = iv.window_edges(start_ns, stop_ns, every, tz)
    bounds = [(max(int(edges[i]), start_ns), min(int(edges[j]), stop_ns)) for i, j in chunk_bounds(edges, int(chunk_s) * NS)]
    step = int(chunk_s) * NS
    # Raw reads of consecutive stretches: the chunks, then stretches of chunk_s up to LOOKBACK_S past the stop.
    stretches = list(bounds)
    while stretches and stretches[-1][1] < stop_ns + LOOKBACK_S * NS:
        a = stretches[-1][1]
        stretches.append((a, min(a + step, stop_ns + LOOKBACK_S * NS)))
    read: dict[int, dict] = {}

    def raw(k: int) -> dict:
        if k not in read:
            read[k] = _raw(store, measurement, field, *stretches[k], tags)
        return read[k]

    carry = None
    for k, (lo, hi) in enumerate(bounds):
        data = raw(k)
        if carry is None:
            carry = _neighbours(store, measurement, field, lo, tags, LOOKBACK_S * NS, after=False, finite=True)
        wanted = set(data) | set(carry)
        after: dict = {}
        m = k + 1
        while m < len(stretches) and stretches[m][0] < hi + LOOKBACK_S * NS and not wanted <= set(after):
            _first_finite(raw(m), wanted, after, hi + LOOKBACK_S * NS)
            m += 1
        read.pop(k, None)
        part = iv.window_edges(lo, hi, every, tz)  # the windows aggregate_part gives this chunk
        clipped = part.copy()
        clipped[0], clipped[-1] = lo, hi
        keys, (rows, windows, values), carry = _counter_chunk(store, measurement, field, lo, hi, clipped, tags,
                                                              register_max, carry, sparse=True, data=data,
                                                              after=after)
        yield keys, rows, part[:-1][windows], values


def _coarsest(step_s: int, at_ns: int) -> int:
    """Largest rollup resolution dividing ``step_s`` to which ``at_ns`` is aligned; ``step_s`` when none is."""
    for res in sorted(ROLLUP_RESOLUTIONS_S, reverse=True):
        if step_s % res == 0 and at_ns % (res * NS) == 0:
            return res
    return step_s


def _from_windows(store, measurement, field, start_ns, stop_ns, edges, agg, tags) -> list[tuple]:
    """mean/sum/min/max/last/count per local window, combined from the store's windowed query at a step dividing
    every edge (answered from its rollups), in up to three parts: an unaligned head, the aligned body, a tail."""
    import pandas as pd

    step = iv.common_step_ns(edges)
    if step < NS or step % NS:
        raise StoreError("window edges are not whole seconds; give windows in whole seconds")
    step_s = step // NS
    a, b = -(-start_ns // step) * step, (stop_ns // step) * step
    if a < b:
        pieces = [(start_ns, a, _coarsest(step_s, start_ns)), (a, b, step_s), (b, stop_ns, _coarsest(step_s, stop_ns))]
    else:
        pieces = [(start_ns, stop_ns, _coarsest(step_s, start_ns))]
    if FAST_RAW and agg in ("min", "max", "last"):
        from core.storage import sqlite_frame

        if sqlite_frame.supports(store) and (stop_ns - start_ns <= RAW_WINDOWS_MAX_S * NS or sqlite_frame.raw_read_shared(
                store, measurement, field, tags, start_ns, stop_ns)):
            return _window_rows(sqlite_frame.read_windows_split(store, measurement, field, pieces, tags, agg),
                                edges, agg)
    parts: dict[str, list[pd.DataFrame]] = {"sum": [], "count": []} if agg == "mean" else {agg: []}
    for name, found in parts.items():
        for lo, hi, w in pieces:
            if hi > lo:
                got = store.query(measurement, field, lo, hi, tags=tags, window_s=int(w), agg=name)
                if not got.empty:
                    found.append(got)
    frames = {name: pd.concat(p, ignore_index=True) for name, p in parts.items() if p}
    if not frames:
        return []
    rows = []
    if agg == "mean":
        totals, counts = _split(frames["sum"]), _split(frames["count"])
        for key, (t, v, _) in totals.items():
            ct, cv, _ = counts.get(key, (t, np.zeros(len(t)), None))
            idx, cidx = np.searchsorted(edges, t, "right") - 1, np.searchsorted(edges, ct, "right") - 1
            n = np.bincount(cidx, weights=cv, minlength=len(edges) - 1)
            total = np.bincount(idx, weights=v, minlength=len(edges) - 1)
            ok = n > 0
            rows.append((key, edges[:-1][ok], total[ok] / n[ok], None))
        return rows
    return _window_rows(_split(frames[agg]), edges, agg)


def _window_rows(split: dict, edges: np.ndarray, agg: str) -> list[tuple]:
    """Per-series windowed values at a step dividing the local windows ``edges`` combined into those windows."""
    rows = []
    for key, (t, v, _) in split.items():
        idx = np.searchsorted(edges, t, "right") - 1
        if len(idx) and (idx[1:] > idx[:-1]).all():  # one bucket per window (the windows are the buckets)
            rows.append((key, edges[idx], v.astype(np.int64) if agg == "count" else v, None))
            continue
        windows, first = np.unique(idx, return_index=True)
        if agg in ("sum", "count"):
            values = np.add.reduceat(v, first)
        elif agg == "min":
            values = np.minimum.reduceat(v, first)
        elif agg == "max":
            values = np.maximum.reduceat(v, first)
        else:  # last: the newest bucket of each window (rows are in time order)
            values = v[np.append(first[1:], len(v)) - 1]
        if agg == "count":
            values = values.astype(np.int64)
        rows.append((key, edges[windows], values, None))
    return rows


# -- read_frame --------------------------------------------------------------------------------------------------------
def read_frame(store: Store, columns: Sequence[Column], start: TimeLike, stop: TimeLike, *, every: int | str,
               tz: str = "UTC", tags: TagFilter | None = None, by: Sequence[str] = ("site", "line", "machine"),
               chunk_s: int = DEFAULT_CHUNK_S, carry: dict | None = None) -> Iterator[pd.DataFrame]:
    """Aligned columns for many series, one frame per time chunk; see :meth:`core.storage.base.Store.read_frame`.

    ``carry`` (a dict, filled in place) continues a read where the previous one stopped: after each chunk it holds
    the end of the range read so far and every series' last value there (the ``before`` of the next chunk); a read
    whose start is that end, with the same columns, tags, windows and time zone, takes those values instead of
    looking each series' previous value up in the store (the same answer as one read over both ranges, as between
    the chunks of one read). Otherwise it is looked up as without ``carry``.
    """
    columns = list(columns)
    names = [c.name for c in columns]
    if not columns:
        raise StoreError("read_frame needs at least one Column")
    if len(set(names)) != len(names):
        raise StoreError(f"read_frame: column names must be unique, got {names}")
    for col in columns:
        if col.agg not in AGGREGATIONS + ENERGY_AGGREGATIONS:
            raise StoreError(f"column {col.name!r}: unknown aggregation {col.agg!r}; valid: "
                             f"{', '.join(AGGREGATIONS + ENERGY_AGGREGATIONS)}")
    if int(chunk_s) <= 0:
        raise StoreError(f"chunk_s must be a positive number of seconds, got {chunk_s!r}")
    start_ns, stop_ns = store._range_ns(start, stop)
    edges = iv.window_edges(start_ns, stop_ns, every, tz)
    state = carry if carry is not None else {}
    signature = repr((columns, sorted((k, v if isinstance(v, str) else sorted(v)) for k, v in (tags or {}).items()),
                      every, tz))
    continued = state.get("until_ns") == start_ns and state.get("signature") == signature
    lasts: dict[str, dict | None] = {col.name: (state["before"].get(col.name) if continued else None)
                                     for col in columns}
    from core.storage.base import Store as _Base
    from core.storage.frame_join import wide_from_rows
    from core.storage.sqlite_frame import shared_raw_reads

    # A store answering chunks in this process (not a writer process's child): the columns' pieces are joined straight
    # into the wide frame (core.storage.frame_join), without a long frame per column in between.
    direct = FAST_WIDE and getattr(type(store), "_aggregate_part", None) is _Base._aggregate_part \
        and "_aggregate_part" not in vars(store)
    for i, j in chunk_bounds(edges, int(chunk_s) * NS):
        lo, hi = max(int(edges[i]), start_ns), min(int(edges[j]), stop_ns)
        parts: list = []
        token = _CODED_TAGS.set(FAST_WIDE)
        try:
            with shared_raw_reads(store):  # columns of one field read its raw points once
                # Columns read from raw points first: min, max and last of a field read raw are then computed from
                # those points (sqlite_frame.raw_read_shared) instead of a windowed query over the rollups.
                for col in sorted(columns, key=lambda c: c.agg in AGGREGATIONS):
                    kwargs: dict[str, Any] = {"every": every, "agg": col.agg, "tags": tags, "tz": tz, "register_max": col.register_max,
                              "max_hold_s": col.max_hold_s, "before": lasts[col.name]}
                    if direct:
                        rows, with_state, lasts[col.name] = part_rows(store, col.measurement, col.field, lo, hi,
                                                                      **kwargs)
                        parts.append((col, (rows, with_state)))
                    else:
                        frame, lasts[col.name] = store._aggregate_part(col.measurement, col.field, lo, hi, **kwargs)
                        parts.append((col, frame))
            parts.sort(key=lambda part: names.index(part[0].name))  # the columns' order
            joined = None
            if direct:
                joined = wide_from_rows([(col, *got) for col, got in parts], list(by),
                                        iv.window_edges(lo, hi, every, tz)[:-1])
                if joined is None:  # what the numpy join does not answer: through the long frames
                    parts = [(col, _long_frame(*got)) for col, got in parts]
        finally:
            _CODED_TAGS.reset(token)
        state.update(until_ns=hi, signature=signature, before=dict(lasts))
        yield joined if joined is not None else wide_frame(parts, list(by))


def column_names(col: Column) -> list[str]:
    """Output columns of one Column: its name, or ``<name>_<state>`` for each machine state."""
    if col.agg == "state_seconds":
        return [f"{col.name}_{state}" for state in MACHINE_STATES.values()]
    return [col.name]


def wide_frame(parts: list[tuple[Column, pd.DataFrame]], by: list[str]) -> pd.DataFrame:
    """Join long aggregate frames into one row per (``by`` tags, time) with a column per Column.

    Rows are matched on integer codes in numpy (sorted as pandas sorts the tags and times); frames with a missing
    ``by`` tag, or with rows that share their keys, take the reference path (:func:`wide_frame_reference`), which
    sums or refuses them. Both give the same frame (tests/storage/test_read_frame_fast.py).
    """
    import pandas as pd

    if not FAST_WIDE:
        return wide_frame_reference(_decoded(parts), by)
    full = []
    for col, frame in parts:
        if not frame.empty and col.agg == "state_seconds":
            frame = frame[frame["state"].isin(list(MACHINE_STATES))]  # unknown state codes are left out
        if frame.empty:
            continue
        if str(frame["time"].dtype) != "datetime64[ns, UTC]" or any(tag not in frame or frame[tag].isna().any()
                                                                     for tag in by):
            return wide_frame_reference(_decoded(parts), by)
        full.append((col, frame))
    if not full:
        return wide_frame_reference(_decoded(parts), by)
    # Global row keys: each by tag as a code in sorted order, then time; rows sorted by them (as pandas sorts).
    sizes = [len(frame) for _, frame in full]
    codes: list[np.ndarray] = []
    tag_values: dict[str, tuple[pd.Series, np.ndarray | None]] = {}
    for tag in by:
        columns = [frame[tag] for _, frame in full]
        if all(isinstance(c.dtype, pd.CategoricalDtype) for c in columns):
            # codes of each frame's categories in the sorted union of them: the same codes and order as factorising
            # the concatenated string columns, from a few distinct values per frame
            cats = pd.concat([pd.Series(c.cat.categories) for c in columns], ignore_index=True)
            global_of, uniques = pd.factorize(cats, sort=True)
            offsets = np.cumsum([0] + [len(c.cat.categories) for c in columns])
            codes.append(np.concatenate([global_of[o + c.cat.codes.to_numpy()] for c, o in zip(columns, offsets)])
                         .astype(np.int64))
            tag_values[tag] = (pd.Series(uniques), codes[-1])
        else:
            joined = pd.concat([_as_values(c) for c in columns], ignore_index=True)
            codes.append(pd.factorize(joined, sort=True)[0].astype(np.int64))
            tag_values[tag] = (joined, None)
    times = np.concatenate([_times(frame) for _, frame in full])
    from core.storage.frame_join import row_keys, scatter_rows

    row, first = row_keys(codes, times)  # each source row's output row, and one source row per output row
    n_rows = len(first)
    out: dict = {"time": pd.to_datetime(times[first], unit="ns", utc=True)}
    for tag in by:
        source, coded = tag_values[tag]
        out[tag] = (source.take(first) if coded is None else source.take(coded[first])).reset_index(drop=True)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    filled: dict = {}
    for (col, frame), lo, hi in zip(full, bounds[:-1], bounds[1:]):
        values = frame["value"].to_numpy()
        states = frame["state"].to_numpy(dtype=np.int64) if col.agg == "state_seconds" else None
        placed = scatter_rows(column_names(col), values, row[lo:hi], n_rows, states)
        if placed is None:
            return wide_frame_reference(_decoded(parts), by)
        filled.update(placed)
    out_columns = ["time", *by, *(n for col, _ in parts for n in column_names(col))]
    for name in out_columns:
        if name not in out:
            out[name] = filled.get(name, np.full(n_rows, np.nan))
    return pd.DataFrame(out)[out_columns]


#: Use :func:`wide_frame`'s numpy join (False: always the reference path; tests compare both).
FAST_WIDE = True


def _as_values(column: pd.Series) -> pd.Series:
    """A tag column as its values (a coded one from :func:`_long_frame` back to its categories' dtype)."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        return pd.Series(column.cat.categories).take(column.cat.codes.to_numpy()).reset_index(drop=True)
    return column


def _decoded(parts: list[tuple[Column, pd.DataFrame]]) -> list[tuple[Column, pd.DataFrame]]:
    """``parts`` with coded tag columns turned back into the values :func:`_long_frame` gives outside read_frame."""
    import pandas as pd

    out = []
    for col, frame in parts:
        coded = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
        if coded:
            frame = frame.assign(**{c: _as_values(frame[c]).values for c in coded})
        out.append((col, frame))
    return out


def wide_frame_reference(parts: list[tuple[Column, pd.DataFrame]], by: list[str]) -> pd.DataFrame:
    """The reference join of :func:`wide_frame` in pandas (sums series sharing the ``by`` tags where that adds up)."""
    import pandas as pd

    index = [*by, "time"]
    series: list = []
    for col, frame in parts:
        if frame.empty:
            continue
        frame = frame.copy()
        for tag in by:
            if tag not in frame:
                frame[tag] = None
        keys = index + (["state"] if col.agg == "state_seconds" else [])
        if frame.duplicated(keys).any():
            if col.agg not in ADDITIVE:
                raise StoreError(f"column {col.name!r}: several series share the tags {by}; {col.agg} of them does not "
                                 "add up: filter the query with tags, or add the distinguishing tag to `by`")
            frame = frame.groupby(keys, dropna=False, sort=False)["value"].sum().reset_index()
        if col.agg == "state_seconds":
            frame = frame[frame["state"].isin(list(MACHINE_STATES))]
            wide = frame.groupby([*index, "state"], dropna=False)["value"].sum().unstack("state")
            wide = wide.reindex(columns=list(MACHINE_STATES))
            wide.columns = column_names(col)
            series.append(wide)
        else:
            series.append(frame.set_index(index)["value"].rename(col.name))
    out_columns = ["time", *by, *(n for col, _ in parts for n in column_names(col))]
    if not series:
        empty = pd.DataFrame({c: [] for c in out_columns})
        empty["time"] = pd.to_datetime(empty["time"], utc=True).dt.as_unit("ns")
        return empty
    joined = pd.concat(series, axis=1, join="outer").sort_index()
    for col, _ in parts:
        if col.agg == "state_seconds":
            cols = [c for c in column_names(col) if c in joined]
            block = joined[cols].to_numpy(dtype=float, copy=True)
            known = ~np.isnan(block).all(axis=1)
            block[known] = np.nan_to_num(block[known], nan=0.0)  # a known state: 0 s in the others
            joined[cols] = block
    joined = joined.reset_index()
    for name in out_columns:
        if name not in joined:
            joined[name] = np.nan
    return joined[out_columns]
