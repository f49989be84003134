"""Energy arithmetic over time windows: counter increases, time-weighted means and integrals, state durations.

This is the one place Wattline turns stored samples into per-window energy figures; the stores
(:meth:`core.storage.base.Store.aggregate`), the collector's counter rule and the dashboard call it. Everything here is
pure numpy over arrays of one series (no per-value Python loops): a year of 1-min values takes milliseconds.

Semantics (``docs/data-model.md``, "Energy from stored series"):

- **Windows** (:func:`window_edges`) are edges [ns, UTC]; sub-daily windows are aligned to local midnight in a site's
  IANA zone (1 h windows in Asia/Kolkata start at :30 UTC), days and months are calendar days and months in that zone
  (a local day lasts 23, 24 or 25 h).
- **Counters** (:func:`counter_increase`): the increase between consecutive readings; a drop is a *rollover* when the
  register's maximum is known and the previous reading was above half of it, else a *reset* (the reading after it
  counts from 0) -- the collector's rule (:func:`classify_drop`). Readings the collector flagged with
  :data:`SEMANTICS_CHANGED` get the same rule even when they did not drop in the stored data. Each increase is spread
  over the time between its two readings in proportion to the overlap with each window, so windows add up exactly and
  an increase across a gap is spread over the gap.
- **Gauges** (:func:`time_weighted`) are step-held: a value holds until the next stored value, a stored missing value
  (NaN) ends the hold, and no hold lasts longer than ``max_hold_s``. The time-weighted mean is therefore unbiased for
  deadband-filtered signals (which store a value only when it changes).
- **States** (:func:`state_seconds`): the same step-hold, as seconds spent in each code per window.

``prev`` arguments carry the last sample before the range, so that the first window starts from a known value.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from core.errors import StoreError

NS = 1_000_000_000
DAY_S = 86400

#: OPC UA StatusCode info bit ``SemanticsChanged``: the collector sets it on the first counter reading after a
#: rollover or reset (collectors/opcua/values.py); :func:`counter_increase` honours it.
SEMANTICS_CHANGED = 0x4000

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_EVERY = re.compile(r"^\s*(\d+)\s*(s|min|h|d|w|mo|y)\s*$")
_UNIT_S = {"s": 1, "min": 60, "h": 3600}


# -- windows -----------------------------------------------------------------------------------------------------------
def zone(tz: str | dt.tzinfo) -> dt.tzinfo:
    """The tzinfo of an IANA zone name (or a tzinfo, returned as is); StoreError naming an unknown zone."""
    if isinstance(tz, dt.tzinfo):
        return tz
    try:
        return ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise StoreError(f"unknown time zone {tz!r}: give an IANA name such as 'Europe/Berlin' or 'UTC'") from exc


def parse_every(every: int | str) -> tuple[str, int]:
    """Split a window length into a kind and a count.

    Parameters
    ----------
    every : int or str
        Seconds (int), or ``"<n>s"``, ``"<n>min"``, ``"<n>h"``, ``"<n>d"`` (calendar days), ``"<n>w"`` (weeks from
        Monday), ``"<n>mo"`` (calendar months), ``"<n>y"``.

    Returns
    -------
    tuple
        ``("s", seconds)``, ``("d", days)`` or ``("mo", months)``.
    """
    if isinstance(every, (int, np.integer)) and not isinstance(every, bool):
        n, unit = int(every), "s"
    else:
        m = _EVERY.match(str(every))
        if not m:
            raise StoreError(f"window {every!r} not understood: give whole seconds or e.g. '15min', '1h', '1d', '1w', '1mo'")
        n, unit = int(m.group(1)), m.group(2)
        if unit in _UNIT_S:
            n, unit = n * _UNIT_S[unit], "s"
        elif unit == "w":
            n, unit = 7 * n, "w"
        elif unit == "y":
            n, unit = 12 * n, "mo"
    if n <= 0:
        raise StoreError(f"window {every!r} must be positive")
    if unit == "s" and n % DAY_S == 0:
        return "d", n // DAY_S
    return unit, n


def _local_date(ns: int, tzinfo: dt.tzinfo) -> dt.date:
    return (_EPOCH + dt.timedelta(microseconds=ns // 1000)).astimezone(tzinfo).date()


def _midnight_ns(day: dt.date, tzinfo: dt.tzinfo) -> int:
    # A midnight that does not exist (a DST change at 00:00) maps, with fold=0, to the instant the day starts.
    local = dt.datetime(day.year, day.month, day.day, tzinfo=tzinfo)
    return ((local - _EPOCH) // _US) * 1000


def _trim(edges: np.ndarray, start_ns: int, stop_ns: int) -> np.ndarray:
    lo = max(int(np.searchsorted(edges, start_ns, side="right")) - 1, 0)
    hi = int(np.searchsorted(edges, stop_ns, side="left"))
    return edges[lo:hi + 1]


def window_edges(start_ns: int, stop_ns: int, every: int | str, tz: str | dt.tzinfo = "UTC") -> np.ndarray:
    """Edges of the windows covering ``[start_ns, stop_ns)``.

    Parameters
    ----------
    start_ns, stop_ns : int
        Range [ns since the epoch, UTC]; ``stop_ns > start_ns``.
    every : int or str
        Window length: whole seconds that divide a day (aligned to local midnight in ``tz``), whole days, or a
        calendar unit (see :func:`parse_every`). Other second counts are accepted in UTC only (aligned to the epoch).
    tz : str or tzinfo
        IANA zone of the plant (default UTC).

    Returns
    -------
    ndarray of int64
        Increasing edges [ns, UTC]: ``edges[0] <= start_ns`` and ``edges[-1] >= stop_ns``; window ``i`` is
        ``[edges[i], edges[i+1])``. A local day across a daylight-saving change lasts 23 or 25 h.
    """
    start_ns, stop_ns = int(start_ns), int(stop_ns)
    if stop_ns <= start_ns:
        raise StoreError(f"window range is empty: stop ({stop_ns}) must be after start ({start_ns})")
    kind, n = parse_every(every)
    tzinfo = zone(tz)
    if kind == "s" and DAY_S % n:
        if tzinfo.utcoffset(dt.datetime(2000, 1, 1)) or tzinfo.utcoffset(dt.datetime(2000, 7, 1)):
            raise StoreError(f"a window of {n} s does not divide a day: in zone {tz} give a divisor of 86400 s, "
                             "whole days or months")
        w = n * NS
        return np.arange((start_ns // w) * w, -(-stop_ns // w) * w + 1, w, dtype=np.int64)
    first = _local_date(start_ns, tzinfo)
    if kind == "mo":
        index = (first.year * 12 + first.month - 1) // n * n
        edges = []
        while True:
            y, m = divmod(index, 12)
            edges.append(_midnight_ns(dt.date(y, m + 1, 1), tzinfo))
            if edges[-1] >= stop_ns:
                break
            index += n
        return _trim(np.array(edges, dtype=np.int64), start_ns, stop_ns)
    step = n if kind in ("d", "w") else 1
    # Whole-day windows are aligned to day counts from 1970-01-01 (weeks: from Monday 1970-01-05).
    origin = dt.date(1970, 1, 5) if kind == "w" else dt.date(1970, 1, 1)
    day = first - dt.timedelta(days=(first - origin).days % step)
    midnights = [_midnight_ns(day, tzinfo)]
    if midnights[0] > start_ns:  # the zone's day starts late (a midnight inside a DST gap): one day earlier
        day -= dt.timedelta(days=step)
        midnights[0] = _midnight_ns(day, tzinfo)
    while midnights[-1] < stop_ns:
        day += dt.timedelta(days=step)
        midnights.append(_midnight_ns(day, tzinfo))
    days = np.array(midnights, dtype=np.int64)
    if kind != "s":
        return _trim(days, start_ns, stop_ns)
    longest = int(np.diff(days).max())  # 25 h on the day a DST change gives back an hour
    offsets = np.arange(-(-longest // (n * NS)), dtype=np.int64) * (n * NS)
    grid = days[:-1, None] + offsets[None, :]
    inner = grid[grid < days[1:, None]]  # a 23-h day has fewer windows, a 25-h day more (cut at the next midnight)
    return _trim(np.concatenate([inner, days[-1:]]), start_ns, stop_ns)


# -- shared preparation ----------------------------------------------------------------------------------------------
def _series(times_ns, values, prev, status=None):
    """Times, values (and status) of one series with ``prev`` in front, sorted, one value per timestamp (the last)."""
    t = np.asarray(times_ns, dtype=np.int64)
    v = np.asarray(values, dtype=float)
    s = None if status is None else np.asarray(status, dtype=np.int64)
    if len(t) != len(v) or (s is not None and len(s) != len(t)):
        raise StoreError(f"times ({len(t)}), values ({len(v)}) and status differ in length")
    if prev is not None:
        t = np.concatenate([np.array([int(prev[0])], dtype=np.int64), t])
        v = np.concatenate([np.array([np.nan if prev[1] is None else float(prev[1])]), v])
        if s is not None:
            s = np.concatenate([np.zeros(1, dtype=np.int64), s])
    if len(t) > 1:
        if (np.diff(t) < 0).any():
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
            s = None if s is None else s[order]
        last = np.append(t[1:] != t[:-1], True)
        if not last.all():
            t, v = t[last], v[last]
            s = None if s is None else s[last]
    return t, v, s


def _cumulative(a: np.ndarray, b: np.ndarray, weights: list, at: np.ndarray) -> list[np.ndarray]:
    """Integrals of step functions up to each time in ``at``: each weight array (None for 1) holds on the disjoint,
    sorted segments ``[a, b)`` [ns] and is 0 elsewhere. Results in [weight x s]."""
    if len(a) == 0:
        return [np.zeros(len(at)) for _ in weights]
    seg = (b - a) / NS
    j = np.searchsorted(a, at, side="right") - 1
    inside = j >= 0
    jj = j[inside]
    part = np.minimum(at[inside] - a[jj], b[jj] - a[jj]) / NS
    out = []
    for w in weights:
        ws = seg if w is None else w * seg
        cum = np.cumsum(ws)
        res = np.zeros(len(at))
        # integral of the segments before j, plus the part of segment j up to the time
        res[inside] = cum[jj] - ws[jj] + (part if w is None else w[jj] * part)
        out.append(res)
    return out


def _held(times_ns, values, edges, prev, max_hold_s):
    """Step-held segments ``[a, b)`` with their values: each value holds until the next stored one (at most
    ``max_hold_s``; the last one until the end of the windows); missing values hold nothing."""
    t, v, _ = _series(times_ns, values, prev)
    if len(t) == 0:
        return t, t, v
    end = np.append(t[1:], max(int(edges[-1]), int(t[-1])))
    if max_hold_s is not None:
        end = np.minimum(end, t + round(float(max_hold_s) * NS))
    keep = np.isfinite(v) & (end > t)
    if keep.all():
        return t, end, v
    return t[keep], end[keep], v[keep]


# -- counters ------------------------------------------------------------------------------------------------------------
def _rollover(previous, register_max: float | None):
    """The rule: a drop is a rollover when the register's maximum is known and the previous reading was above half
    of it (numpy-vectorised over ``previous``)."""
    if not register_max:
        return np.zeros(np.shape(previous), dtype=bool)
    return np.asarray(previous, dtype=float) > float(register_max) / 2


def classify_drop(previous: float, value: float, register_max: float | None) -> str:
    """Classify a counter reading lower than the one before it.

    Parameters
    ----------
    previous, value : float
        The reading before the drop and the one after it [counter unit].
    register_max : float or None
        The register's maximum [counter unit], when known.

    Returns
    -------
    str
        ``"rollover"`` when ``register_max`` is known and ``previous > register_max / 2`` (the counter wrapped: the
        increase is ``register_max - previous + value``), else ``"reset"`` (the increase is ``value``).
    """
    return "rollover" if bool(_rollover(previous, register_max)) else "reset"


def counter_deltas(values: np.ndarray, register_max: float | None = None, status: np.ndarray | None = None) -> np.ndarray:
    """Increase between consecutive readings of a counter [counter unit], ``len(values) - 1`` of them.

    Readings must be finite and in time order. A drop, or a reading flagged with :data:`SEMANTICS_CHANGED` in
    ``status``, is a rollover or a reset (:func:`classify_drop`).
    """
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return np.zeros(0)
    d = np.diff(v)
    drop = d < 0
    if status is not None:
        drop |= (np.asarray(status, dtype=np.int64)[1:] & SEMANTICS_CHANGED) != 0
    if drop.any():
        prev, cur = v[:-1], v[1:]
        after = np.where(_rollover(prev, register_max), (register_max or 0.0) - prev + cur, cur)
        d = np.where(drop, after, d)
    return d


def counter_increase(times_ns, values, edges, register_max: float | None = None, prev=None, status=None) -> np.ndarray:
    """Increase of a counter per window.

    Parameters
    ----------
    times_ns : array of int64
        Reading times [ns]; readings outside the windows count for the part of their step inside them.
    values : array of float
        Readings [counter unit]; NaN (missing) readings are skipped.
    edges : array of int64
        Window edges [ns] (:func:`window_edges`).
    register_max : float, optional
        The register's maximum [counter unit]: drops from above half of it are rollovers, others resets.
    prev : tuple, optional
        ``(time_ns, value)`` of the last reading before the range.
    status : array of int, optional
        StatusCodes of ``values``; a reading flagged :data:`SEMANTICS_CHANGED` is treated as after a drop.

    Returns
    -------
    ndarray of float
        Increase per window [counter unit]; NaN for windows outside the span of the readings. Each step between two
        readings is spread over the time between them pro rata, so a step across a gap is shared by the windows of
        the gap and the windows add up to the total increase. This is :func:`counter_increase_many` for one series.
    """
    t, v, s = _series(times_ns, values, prev, status)
    return counter_increase_many(t, v, np.array([0, len(t)]), edges, register_max, status=s)[0]


def counter_increase_many(times_ns, values, offsets, edges, register_max: float | None = None, status=None,
                          sparse: bool = False):
    """Increase per window of many counters at once (the arithmetic of :func:`counter_increase`).

    Parameters
    ----------
    times_ns, values : array
        Readings of all series one after the other [ns], [counter unit]; series ``i`` is
        ``[offsets[i], offsets[i + 1])``. Within a series the readings may be unsorted and share times (the last one
        counts); NaN readings are skipped.
    offsets : array of int
        ``n_series + 1`` non-decreasing positions from 0 to ``len(values)``.
    edges : array of int64
        Window edges [ns], shared by all series.
    register_max : float, optional
        The registers' maximum [counter unit] (see :func:`counter_increase`).
    status : array of int, optional
        StatusCodes of ``values`` (see :func:`counter_increase`).
    sparse : bool
        Return only the windows a non-zero step of a series overlaps, as ``(series, window, increase)`` arrays
        (every other window inside a series' span of readings has an increase of exactly 0).

    Returns
    -------
    ndarray or tuple
        Dense: increase per series and window [counter unit], shape ``(n_series, len(edges) - 1)``, NaN outside
        each series' span of readings. Sparse: ``(series index, window index, increase)``, ordered by series and
        window.

    Notes
    -----
    Work is vectorised over all series (per reading, and per window a step overlaps). Each series gets the same
    float operations in the same order as ``np.cumsum`` and ``np.interp`` give on that series alone, so a series'
    result does not depend on what is read with it (tests/storage/test_counter_many.py compares them on random
    series with rollovers, resets, gaps, duplicates and missing readings).
    """
    edges = np.asarray(edges, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    t = np.asarray(times_ns, dtype=np.int64)
    v = np.asarray(values, dtype=float)
    s = None if status is None else np.asarray(status, dtype=np.int64)
    if len(t) != len(v) or (s is not None and len(s) != len(t)):
        raise StoreError(f"times ({len(t)}), values ({len(v)}) and status differ in length")
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(t) or (np.diff(offsets) < 0).any():
        raise StoreError(f"offsets must rise from 0 to the number of readings ({len(t)})")
    n_series, n_windows = len(offsets) - 1, max(len(edges) - 1, 0)
    seg = np.repeat(np.arange(n_series), np.diff(offsets))
    if len(t) > 1 and (np.diff(t)[seg[1:] == seg[:-1]] < 0).any():
        order = np.lexsort((t, seg))  # stable: readings at one time keep their order (the last one counts)
        t, v, seg = t[order], v[order], seg[order]
        s = None if s is None else s[order]
    keep = np.isfinite(v)
    keep[:-1] &= (t[1:] != t[:-1]) | (seg[1:] != seg[:-1])  # one reading per time, the last (missing or not)
    if not keep.all():
        t, v, seg = t[keep], v[keep], seg[keep]
        s = None if s is None else s[keep]
    counts = np.bincount(seg, minlength=n_series)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    # Running total per series: the counter rule's deltas over the flat arrays (a delta across two series is never
    # used), summed per series as np.cumsum sums one series.
    steps = np.flatnonzero(seg[1:] == seg[:-1])  # step k: from reading k to k + 1
    deltas = counter_deltas(v, register_max, s)[steps] if len(steps) else np.zeros(0)
    total = np.zeros(len(v))
    total[steps + 1] = _segment_cumsum(deltas, np.maximum(counts - 1, 0))
    # Windows that a non-zero step overlaps (from the last edge at or before its start to the last before its end).
    moving = deltas != 0
    step_series = seg[steps][moving]
    w_lo = np.maximum(np.searchsorted(edges, t[steps][moving], side="right") - 1, 0)
    w_hi = np.minimum(np.searchsorted(edges, t[steps + 1][moving], side="left") - 1, n_windows - 1)
    spans = np.maximum(w_hi - w_lo + 1, 0)
    cell_series = np.repeat(step_series, spans)
    cell_window = np.repeat(w_lo - np.concatenate([[0], np.cumsum(spans)[:-1]]).astype(np.int64), spans)
    cell_window += np.arange(len(cell_window))
    cell_step = np.repeat(steps[moving], spans)  # the reading each cell's step starts from
    inner = (cell_window > np.repeat(w_lo, spans)) & (cell_window < np.repeat(w_hi, spans))
    # Steps of a series are in time order, so its windows come in order too: a window shared by consecutive steps
    # is a repeat of the one before it.
    repeat = np.zeros(len(cell_series), dtype=bool)
    repeat[1:] = (cell_series[1:] == cell_series[:-1]) & (cell_window[1:] == cell_window[:-1])
    if repeat.any():
        cell_series, cell_window = cell_series[~repeat], cell_window[~repeat]
        cell_step, inner = cell_step[~repeat], inner[~repeat]
    increase = np.empty(len(cell_series))
    # Windows inside one step (both edges strictly between its readings; most of those a step across a gap spreads
    # over): the total at their edges lies on that step's line, no search needed.
    k = cell_step[inner]
    origin = t[starts[seg[k]]]
    x0, x1 = (t[k] - origin).astype(float), (t[k + 1] - origin).astype(float)
    xa, xb = (edges[cell_window[inner]] - origin).astype(float), (edges[cell_window[inner] + 1] - origin).astype(float)
    plain = (x0 < xa) & (xb < x1)  # as floats too (else, as np.interp searches floats, the general search below)
    if not plain.all():
        inner[np.flatnonzero(inner)[~plain]] = False
        k, x0, x1, xa, xb = k[plain], x0[plain], x1[plain], xa[plain], xb[plain]
    y0, y1 = total[k], total[k + 1]
    increase[inner] = _on_line(xb, x0, x1, y0, y1) - _on_line(xa, x0, x1, y0, y1)
    # The others: the total at both edges of each window, in one pass over the readings.
    rest_series, rest_window = cell_series[~inner], cell_window[~inner]
    at = _total_at(t, total, seg, starts, counts, edges, np.concatenate([rest_series, rest_series]),
                   np.concatenate([rest_window, rest_window + 1]))
    increase[~inner] = at[len(rest_series):] - at[:len(rest_series)]
    if sparse:
        return cell_series, cell_window, increase
    out = np.full((n_series, n_windows), np.nan)
    spanned = counts >= 2
    if n_windows and spanned.any():
        first, last = t[starts[spanned]], t[starts[spanned] + counts[spanned] - 1]
        covered = (edges[None, 1:] > first[:, None]) & (edges[None, :-1] < last[:, None])
        out[spanned] = np.where(covered, 0.0, np.nan)
    out[cell_series, cell_window] = increase
    return out


def _segment_cumsum(d: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``np.cumsum`` of each consecutive segment of ``d`` (lengths ``lengths``) with the same additions in the same
    order: short segments of similar length are padded into the rows of a matrix and summed along the rows."""
    out = np.empty(len(d))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    for i in np.flatnonzero(lengths >= 64):  # long segments one by one (at most one call per 64 values)
        out[starts[i]:starts[i] + lengths[i]] = np.cumsum(d[starts[i]:starts[i] + lengths[i]])
    present = np.flatnonzero((lengths > 0) & (lengths < 64))
    bucket = np.ceil(np.log2(lengths[present])).astype(np.int64)  # lengths within a factor of two: padding < 2x
    for b in np.unique(bucket):
        rows = present[bucket == b]
        width = int(lengths[rows].max())
        per_block = max(1, 4_000_000 // width)
        for a in range(0, len(rows), per_block):
            part = rows[a:a + per_block]
            col = np.arange(width)
            inside = col[None, :] < lengths[part][:, None]
            index = (starts[part][:, None] + col[None, :])[inside]
            padded = np.zeros((len(part), width))
            padded[inside] = d[index]
            out[index] = np.cumsum(padded, axis=1)[inside]
    return out


def _total_at(t, total, seg, starts, counts, edges, series, edge):
    """The running total of each ``series`` at ``edges[edge]``, as ``np.interp`` gives it on that series' times
    relative to its first reading (linear between readings, flat outside them)."""
    if len(series) == 0:
        return np.zeros(0)
    first = t[starts[series]]
    n_edges = len(edges)
    # Readings at or before the edge, in integers: readings ordered by (series, first edge at or after them).
    key = seg * (n_edges + 1) + np.searchsorted(edges, t, side="left")
    pos = np.searchsorted(key, series * (n_edges + 1) + edge, side="right") - starts[series]
    x = (t - t[starts[seg]]).astype(float)
    xe = (edges[edge] - first).astype(float)
    # np.interp searches the floats, where two times may round to one value (spans over 2**53 ns with sub-microsecond
    # stamps): count as it does.
    while True:
        ahead = np.flatnonzero(pos < counts[series])
        more = ahead[x[starts[series[ahead]] + pos[ahead]] <= xe[ahead]]
        if not len(more):
            break
        pos[more] += 1
    last = starts[series] + counts[series] - 1
    out = np.where(pos == 0, total[starts[series]], total[last])
    mid = np.flatnonzero((pos > 0) & (pos < counts[series]))
    j = starts[series[mid]] + pos[mid] - 1
    out[mid] = _on_line(xe[mid], x[j], x[j + 1], total[j], total[j + 1])
    return out


def _on_line(xm, x0, x1, y0, y1):
    """``np.interp``'s value at ``xm`` between the points ``(x0, y0)`` and ``(x1, y1)``, with its formula."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        slope = (y1 - y0) / (x1 - x0)
        res = slope * (xm - x0) + y0
        bad = np.isnan(res)
        if bad.any():  # as np.interp: from the other end, then the flat value
            res[bad] = slope[bad] * (xm[bad] - x1[bad]) + y1[bad]
            flat = np.isnan(res) & (y0 == y1)
            res[flat] = y0[flat]
    return np.where(x0 == xm, y0, res)


# -- gauges and states -------------------------------------------------------------------------------------------------
def time_weighted(times_ns, values, edges, prev=None, max_hold_s: float | None = None,
                  integral: bool = False) -> np.ndarray:
    """Time-weighted mean, or integral, of a step-held signal per window.

    Parameters
    ----------
    times_ns : array of int64
        Sample times [ns].
    values : array of float
        Samples [unit]; NaN (a stored missing value) ends the previous value's hold and holds nothing itself.
    edges : array of int64
        Window edges [ns].
    prev : tuple, optional
        ``(time_ns, value)`` of the last sample before the range (its value holds into the first window).
    max_hold_s : float, optional
        Longest time a value holds [s]; unlimited when omitted (until the next sample or the last edge).
    integral : bool
        Return the integral [unit x h] (kW gives kWh) instead of the mean.

    Returns
    -------
    ndarray of float
        Per window: mean [unit] over the time a value held, or integral [unit x h]; NaN where no value held.
    """
    edges = np.asarray(edges, dtype=np.int64)
    a, b, v = _held(times_ns, values, edges, prev, max_hold_s)
    held, area = (np.diff(c) for c in _cumulative(a, b, [None, v], edges))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = area / 3600.0 if integral else area / held
    return np.where(held > 0, out, np.nan)


def state_seconds(times_ns, codes, edges, prev=None, max_hold_s: float | None = None) -> dict[int, np.ndarray]:
    """Seconds spent in each state per window.

    Parameters
    ----------
    times_ns : array of int64
        Times of the state samples [ns].
    codes : array of float
        State codes (whole numbers; NaN ends the hold), step-held like :func:`time_weighted`.
    edges : array of int64
        Window edges [ns].
    prev : tuple, optional
        ``(time_ns, code)`` of the last sample before the range.
    max_hold_s : float, optional
        Longest time a state holds [s].

    Returns
    -------
    dict
        ``{code: seconds per window}`` [s] for every code that held in some window; a window's seconds add up to the
        time its state was known.
    """
    edges = np.asarray(edges, dtype=np.int64)
    a, b, v = _held(times_ns, codes, edges, prev, max_hold_s)
    result: dict[int, np.ndarray] = {}
    codes_held = np.unique(v)
    for code, cum in zip(codes_held, _cumulative(a, b, [(v == c).astype(float) for c in codes_held], edges)):
        seconds = np.diff(cum)
        if (seconds > 0).any():
            result[int(code) if float(code).is_integer() else code] = seconds
    return result


def floor_to(ns: int, step_ns: int) -> int:
    """``ns`` rounded down to a multiple of ``step_ns``."""
    return (int(ns) // step_ns) * step_ns


def common_step_ns(edges: np.ndarray) -> int:
    """Largest step [ns] that divides every edge (0 for no edges): windows of that length tile the windows exactly."""
    if len(edges) == 0:
        return 0
    return int(np.gcd.reduce(np.asarray(edges, dtype=np.int64))) or 0


__all__ = [
    "SEMANTICS_CHANGED",
    "classify_drop",
    "common_step_ns",
    "counter_deltas",
    "counter_increase",
    "counter_increase_many",
    "floor_to",
    "parse_every",
    "state_seconds",
    "time_weighted",
    "window_edges",
    "zone",
]
