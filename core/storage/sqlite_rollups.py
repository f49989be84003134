"""Rollups of the embedded store: 1-min, 15-min and 1-h partial aggregates per series.

The SQL that merges a batch into rollup rows, keeps the coarse (15-min, 1-h) rows lazily and reads them back, and the
numpy helper that builds rollup rows from sorted values. Used by :mod:`core.storage.sqlite_write` (keeping them) and
:mod:`core.storage.sqlite_query` (answering windows from them).
"""

from __future__ import annotations

import itertools

import numpy as np

from core.storage.base import ROLLUP_RESOLUTIONS_S

NS = 1_000_000_000
_MIN_NS = -(2**63)
_MAX_NS = 2**63 - 1

# Merging a batch's partial aggregate (res, series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast) into a rollup
# row: counts and sums add up, extremes widen, the newest present value becomes the last one.
_ROLLUP_MERGE_SET = """
    n = n + {n}, nrows = nrows + {nrows},
    total = CASE WHEN {total} IS NULL THEN total WHEN total IS NULL THEN {total} ELSE total + {total} END,
    vmin = min(coalesce(vmin, {vmin}), coalesce({vmin}, vmin)),
    vmax = max(coalesce(vmax, {vmax}), coalesce({vmax}, vmax)),
    vlast = CASE WHEN {last_ts} IS NOT NULL THEN {vlast} ELSE vlast END,
    last_ts = coalesce({last_ts}, last_ts)"""
_ROLLUP_MERGE_UPDATE = "UPDATE rollup SET" + _ROLLUP_MERGE_SET.format(
    n="?4", nrows="?5", total="?6", vmin="?7", vmax="?8", last_ts="?9", vlast="?10"
) + " WHERE res = ?1 AND series_id = ?2 AND bucket = ?3"
_ROLLUP_MERGE_UPSERT = (
    "INSERT INTO rollup (res, series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (res, series_id, bucket) DO UPDATE SET"
    + _ROLLUP_MERGE_SET.format(**{k: f"excluded.{k}" for k in ("n", "nrows", "total", "vmin", "vmax", "last_ts",
                                                                 "vlast")})
)


#: Coarse rollup resolutions kept lazily: see :func:`_coarse_rows_sql`.
_COARSE_S = tuple(r for r in ROLLUP_RESOLUTIONS_S if r != 60)


def _coarse_rows_sql(res: int, minutes: str) -> str:
    """SELECT of rollup rows ``(series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast)`` at ``res`` [s]
    aggregated from the 1-min rollup rows ``f`` that ``minutes`` (a FROM ... WHERE fragment) selects.

    Why coarse rollups are lazy: updating the 15-min and 1-h rows of every series with every write doubled the work of
    a collector's write (thousands of series, one write a second). So a series' coarse rows are written when a later
    bucket starts (or by an exact recompute), and the newest coarse bucket without a row is aggregated from the 1-min
    rows at query time. Invariant: every coarse bucket before a series' newest coarse row has its row, and every coarse
    row is exact.
    """
    r, m = res * NS, 60 * NS
    return f"""SELECT g.series_id, g.bucket, g.n, g.nrows, g.total, g.vmin, g.vmax, g.last_ts,
               (SELECT v.vlast FROM rollup v WHERE v.res = 60 AND v.series_id = g.series_id
                  AND v.bucket = (g.last_ts / {m}) * {m}) AS vlast
        FROM (SELECT f.series_id AS series_id, (f.bucket / {r}) * {r} AS bucket, sum(f.n) AS n, sum(f.nrows) AS nrows,
                     sum(f.total) AS total, min(f.vmin) AS vmin, max(f.vmax) AS vmax, max(f.last_ts) AS last_ts
              {minutes} GROUP BY f.series_id, (f.bucket / {r}) * {r}) AS g"""


def _newest_coarse_sql(res: int, series: str) -> str:
    """Start of the first coarse bucket after the series' newest coarse row at ``res``, or the smallest time."""
    return (f"coalesce((SELECT max(c.bucket) FROM rollup c WHERE c.res = {res} AND c.series_id = {series})"
            f" + {res * NS}, {_MIN_NS})")


def _rollup_source_sql(res: int) -> str:
    """Derived table of every rollup row at ``res`` for series ``:ids`` (JSON array) and buckets in ``[:lo, :hi)``,
    the lazily kept coarse buckets included."""
    stored = ("SELECT series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast FROM rollup"
              f" WHERE res = {res} AND series_id IN (SELECT value FROM json_each(:ids)) AND bucket >= :lo AND bucket < :hi")
    if res not in _COARSE_S:
        return f"({stored})"
    # The 1-min scan starts, per series, after its newest coarse row: an index range, never the whole history.
    pending = _coarse_rows_sql(res, f"""FROM json_each(:ids) AS j JOIN rollup f ON f.res = 60 AND f.series_id = j.value
        AND f.bucket >= max(:lo, {_newest_coarse_sql(res, 'j.value')}) AND f.bucket < :hi""")
    return f"({stored} UNION ALL {pending})"


# Coarse rows of a series for its buckets from after its newest coarse row up to (not including) ?2, from 1-min rows.
_CLOSE_COARSE = {
    res: "INSERT OR IGNORE INTO rollup (res, series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast) "
    f"SELECT {res}, * FROM ("
    + _coarse_rows_sql(res, f"FROM rollup f WHERE f.res = 60 AND f.series_id = ?1"
                            f" AND f.bucket >= {_newest_coarse_sql(res, '?1')} AND f.bucket < ?2")
    + ")"
    for res in _COARSE_S
}


def _bucket_rows(res: int, sids: np.ndarray, buckets: np.ndarray, times: np.ndarray, vals: np.ndarray,
                 finite: np.ndarray, starts: np.ndarray) -> list[tuple]:
    """Rollup rows ``(res, series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast)`` of sorted values.

    ``starts`` are the indexes where a new (series, bucket) group begins; missing values count in ``nrows`` only.
    """
    nrows = np.diff(np.append(starts, len(times)))
    n = np.add.reduceat(finite.astype(np.int64), starts)
    total = np.add.reduceat(np.where(finite, vals, 0.0), starts)
    vmin = np.minimum.reduceat(np.where(finite, vals, np.inf), starts)
    vmax = np.maximum.reduceat(np.where(finite, vals, -np.inf), starts)
    last_idx = np.maximum(np.maximum.reduceat(np.where(finite, np.arange(len(times)), -1), starts), 0)
    # Buckets without a present value get NULL aggregates: SQLite stores a bound NaN as NULL, so only last_ts (an
    # integer, which NaN would not survive) needs None put in by hand.
    empty = n == 0
    total = np.where(empty, np.nan, total)
    vmin = np.where(empty, np.nan, vmin)
    vmax = np.where(empty, np.nan, vmax)
    vlast = np.where(empty, np.nan, vals[last_idx])
    last_ts = times[last_idx].tolist()
    for i in np.flatnonzero(empty).tolist():
        last_ts[i] = None
    return list(zip(itertools.repeat(res), sids[starts].tolist(), buckets[starts].tolist(), n.tolist(), nrows.tolist(),
                    total.tolist(), vmin.tolist(), vmax.tolist(), last_ts, vlast.tolist()))
