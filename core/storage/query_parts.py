"""Windowed queries answered in parts: rollups for every whole, complete rollup bucket, raw points for the rest.

Shared by the backends (one implementation of the rule). A windowed query over ``[start, stop)`` is split along
rollup bucket edges:

- the coarsest rollup resolution that divides the window answers the longest stretch aligned to it (and, on InfluxDB,
  complete: the rollup tasks lag the clock, so a range ending now has a newest part no rollup holds yet);
- the head and tail left over are split the same way with the finer resolutions;
- what no rollup can answer (less than a minute at each end of an unaligned range, the newest minutes of a range
  ending now, or everything when the window is not a multiple of a rollup resolution) is read from raw points.

Each part gives partial aggregates per (series, window); they are combined exactly: sums and counts add up, extremes
widen, the mean is the summed total over the summed count, and ``last`` comes from the newest part holding the window.
So the answer equals the raw answer (up to floating-point rounding of sums), whatever the range.

When a large stretch must still be read raw (a window that no rollup divides, or a store without rollups), the query
says so: a warning in the log naming the window, the raw span and how to avoid it (no silent raw read of a year).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.storage.base import ROLLUP_RESOLUTIONS_S

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

NS = 1_000_000_000
#: A windowed query reading more than this span from raw points logs a warning [s].
RAW_SPAN_WARN_S = 2 * 86400


@dataclass(frozen=True)
class QueryPart:
    """A stretch ``[start_ns, stop_ns)`` of a windowed query and what answers it: a rollup ``res`` [s] or raw points
    (``res`` None)."""

    start_ns: int
    stop_ns: int
    res: int | None

    @property
    def source(self) -> str:
        """``"raw"`` or ``"rollup_<res>s"`` (for logs and tests)."""
        return "raw" if self.res is None else f"rollup_{self.res}s"


def plan_parts(window_s: int, start_ns: int, stop_ns: int,
               complete_until: Callable[[int], int] | None = None,
               resolutions: Sequence[int] = ROLLUP_RESOLUTIONS_S) -> list[QueryPart]:
    """Split a windowed query into parts answered by rollups or raw points (in time order, covering the range).

    Parameters
    ----------
    window_s : int
        Query window [s].
    start_ns, stop_ns : int
        Query range [ns].
    complete_until : callable, optional
        ``res -> ns``: the rollup at ``res`` holds every bucket that ends by then. None: every bucket (rollups kept on
        write). An empty ``resolutions`` means no rollup at all.
    resolutions : sequence of int
        Rollup resolutions available [s].

    Returns
    -------
    list of QueryPart
    """
    usable = sorted((int(r) for r in resolutions if window_s % r == 0), reverse=True)

    def plan(a: int, b: int, rs: list[int]) -> list[QueryPart]:
        if a >= b:
            return []
        for i, r in enumerate(rs):
            r_ns = r * NS
            limit = b if complete_until is None else min(b, int(complete_until(r)))
            lo = -(-a // r_ns) * r_ns
            hi = (limit // r_ns) * r_ns
            if lo < hi:
                finer = rs[i + 1:]
                return [*plan(a, lo, finer), QueryPart(lo, hi, r), *plan(hi, b, finer)]
        return [QueryPart(a, b, None)]

    return plan(int(start_ns), int(stop_ns), usable)


def raw_span_s(parts: Sequence[QueryPart]) -> float:
    """Total span of the raw parts [s]."""
    return sum(p.stop_ns - p.start_ns for p in parts if p.res is None) / NS


def warn_if_raw_heavy(parts: Sequence[QueryPart], window_s: int, description: str, why: str = "") -> None:
    """Log a warning when the raw parts span more than :data:`RAW_SPAN_WARN_S`, naming the window and the fix."""
    span = raw_span_s(parts)
    if span <= RAW_SPAN_WARN_S:
        return
    if why:
        reason = why
    elif not any(window_s % r == 0 for r in ROLLUP_RESOLUTIONS_S):
        reason = (f"the window of {window_s} s is not a multiple of a rollup resolution "
                  f"({', '.join(f'{r} s' for r in ROLLUP_RESOLUTIONS_S)}); use one that is")
    else:
        reason = "no rollup covers that stretch yet"
    log.warning("%s: windowed query reads %.1f days of raw points: %s", description, span / 86400, reason)


#: Partial aggregates each part returns for a query aggregation.
PARTIALS = {"mean": ("sum", "count"), "sum": ("sum",), "count": ("count",), "min": ("min",), "max": ("max",),
            "last": ("last",)}


def combine_parts(pieces: Sequence[tuple[QueryPart, str, pd.DataFrame]], agg: str) -> pd.DataFrame:
    """Combine the partial answers of the parts of one windowed query.

    Parameters
    ----------
    pieces : sequence of (QueryPart, partial aggregation, DataFrame)
        Long-form answers (``time`` = window start, tag columns, ``value``) of each part for each partial in
        :data:`PARTIALS` ``[agg]``.
    agg : str
        The query's aggregation.

    Returns
    -------
    DataFrame
        Long form like a backend's windowed answer: ``time``, tag columns, ``value``; sorted by tags, then time.
    """
    import pandas as pd

    frames = [f for _p, _a, f in pieces if not f.empty]
    tags = sorted({c for f in frames for c in f.columns} - {"time", "value"})
    if not frames:
        return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"),
                             "value": pd.Series([], dtype="int64" if agg == "count" else "float64")})
    keys = [*tags, "time"]
    rows = []
    for order, (_part, partial, frame) in enumerate(pieces):
        if frame.empty:
            continue
        frame = frame.copy()
        for tag in tags:
            if tag not in frame.columns:
                frame[tag] = None
        frame["_partial"] = partial
        frame["_order"] = order
        rows.append(frame[[*keys, "value", "_partial", "_order"]])
    long = pd.concat(rows, ignore_index=True)
    # Missing tags (None) would drop out of a groupby: group on a stand-in and put None back afterwards.
    marker = "\x00none"
    for tag in tags:
        long[tag] = long[tag].astype(object).where(long[tag].notna(), marker)
    if agg == "mean":
        sums = long[long["_partial"] == "sum"].groupby(keys)["value"].sum(min_count=1)
        counts = long[long["_partial"] == "count"].groupby(keys)["value"].sum()
        both = pd.concat({"s": sums, "c": counts}, axis=1)
        both = both[both["c"] > 0]
        out = (both["s"] / both["c"]).rename("value").reset_index()
    elif agg in ("sum", "count"):
        out = long.groupby(keys)["value"].sum().reset_index()
    elif agg == "min":
        out = long.groupby(keys)["value"].min().reset_index()
    elif agg == "max":
        out = long.groupby(keys)["value"].max().reset_index()
    elif agg == "last":
        newest = long.sort_values("_order").groupby(keys, sort=False).tail(1)
        out = newest[[*keys, "value"]]
    else:  # pragma: no cover - check_query_args refuses it first
        raise ValueError(agg)
    for tag in tags:
        out[tag] = out[tag].where(out[tag] != marker, None)
    out["value"] = out["value"].astype("int64" if agg == "count" else "float64")
    out = out.sort_values([*tags, "time"], kind="stable", na_position="first").reset_index(drop=True)
    return out[["time", *tags, "value"]]


def query_in_parts(run_part: Callable[[QueryPart, str], pd.DataFrame], parts: Sequence[QueryPart],
                   agg: str) -> pd.DataFrame:
    """Answer a windowed query from its parts: ``run_part(part, partial_agg)`` gives each part's long answer."""
    pieces = [(part, partial, run_part(part, partial)) for part in parts for partial in PARTIALS[agg]]
    return combine_parts(pieces, agg)


def answer_in_parts(store, measurement: str, field: str, start_ns: int, stop_ns: int, tags, window_s: int,
                    agg: str, complete_until: Callable[[int], int] | None = None) -> pd.DataFrame | None:
    """Answer a windowed query of ``store`` whose range no single rollup answers, part by part.

    Each part is a query of ``store`` itself over an aligned stretch (answered by its rollup) or over a short raw
    stretch. Records the parts in ``store.last_query_sources`` (and a debug log line). Returns None when the query
    is one raw part (the caller reads raw points as before), after a warning when that part is long.
    """
    parts = plan_parts(window_s, start_ns, stop_ns, complete_until)
    warn_if_raw_heavy(parts, window_s, getattr(store, "description", type(store).__name__))
    if len(parts) <= 1:
        store.last_query_sources = tuple(parts)
        return None
    log.debug("%s: %s.%s window %d s answered by %s", getattr(store, "description", ""), measurement, field,
              window_s, ", ".join(p.source for p in parts))
    frame = query_in_parts(
        lambda part, partial: store.query(measurement, field, part.start_ns, part.stop_ns, tags, window_s, partial),
        parts, agg)
    store.last_query_sources = tuple(parts)  # after the parts' own queries, which set it for themselves
    return frame
