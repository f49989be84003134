"""Columnar chunks: the embedded store's bulk layout for large :meth:`SQLiteStore.write_arrays` calls.

Why: SQLite inserts at most a few hundred thousand B-tree rows per second, and the row layout costs two rows per
value at 1-min resolution (the point and its 1-min rollup). A chunk holds up to one UTC day of one series as three
packed arrays (times int64, values float64 with NaN for missing, status int64 or NULL when all Good), so a week of
1-min data is 7 rows plus its 15-min and 1-h rollups.

Invariants (they keep every answer exact):

- A (series, timestamp) is stored in one place only, and rows and chunks of a series never share a UTC hour; no two
  chunks of a series share an hour. A bulk write into hours that hold rows goes through the row path (exploding the
  overlapped chunks into rows first); a bulk write into hours of chunks merges with them (the new value wins); a row
  write into hours of a chunk explodes that chunk into rows first.
- Chunks never cross a UTC day boundary (so a chunk is shorter than a day and an explosion is bounded).
- A chunk carries its own 15-min and 1-h rollups as packed arrays (:data:`PARTIAL`), computed with numpy on write, so a
  bulk write adds no row per rollup bucket. There is no 1-min rollup for chunk data: a query that would read the 1-min
  rollup aggregates the raw chunk instead (decoding is cheap). Windowed queries combine the rows' rollup table and the
  chunks' rollups (or raw values) as partial aggregates, which is exact because each bucket comes from one place.
"""

from __future__ import annotations

import itertools
import sqlite3

import numpy as np

NS = 1_000_000_000
HOUR_NS = 3600 * NS
DAY_NS = 86400 * NS

#: A ``write_arrays`` call with at least this many values (after de-duplication) is stored as chunks.
CHUNK_MIN_VALUES = 4096

#: Rollup levels stored in each chunk [s]; the 1-min level is computed from the chunk at query time.
CHUNK_ROLLUPS_S = (900, 3600)

#: One rollup bucket of a chunk (a bucket without a present value has n = 0; its other fields are not used).
PARTIAL = np.dtype([("bucket", "<i8"), ("n", "<i8"), ("nrows", "<i8"), ("total", "<f8"), ("vmin", "<f8"),
                    ("vmax", "<f8"), ("vlast", "<f8")])

CHUNK_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    n INTEGER NOT NULL,
    times BLOB NOT NULL,
    vals BLOB NOT NULL,
    status BLOB,
    r900 BLOB NOT NULL,
    r3600 BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_series_start ON chunks (series_id, start_ts, end_ts);
"""


def check_schema(conn: sqlite3.Connection, path) -> None:
    """Upgrade an empty chunks table of an early development layout (no rollup columns); refuse a filled one."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}
    if "r3600" in columns:
        return
    if conn.execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is not None:
        from core.errors import StoreError

        raise StoreError(f"store {path}: its chunks table has an old layout without rollups; re-create the store "
                         "(e.g. run the backfill again into a new file)")
    conn.execute("DROP TABLE chunks")
    conn.executescript(CHUNK_SCHEMA)


def hour_span(lo_ns: int, hi_ns: int) -> tuple[int, int]:
    """Return ``[first hour start, last hour end)`` covering the timestamps ``lo_ns .. hi_ns`` [ns]."""
    return (lo_ns // HOUR_NS) * HOUR_NS, (hi_ns // HOUR_NS + 1) * HOUR_NS


def overlapping(conn: sqlite3.Connection, sid: int, lo_ns: int, hi_ns: int) -> list[tuple]:
    """Chunks of one series with data in ``[lo_ns, hi_ns)``: rows (id, start_ts, end_ts, times, vals, status)."""
    return conn.execute(
        "SELECT id, start_ts, end_ts, times, vals, status FROM chunks"
        " WHERE series_id = ? AND start_ts > ? AND start_ts < ? AND end_ts >= ?",
        (sid, lo_ns - DAY_NS, hi_ns, lo_ns),
    ).fetchall()


def any_in_range(conn: sqlite3.Connection, ids_json: str, lo_ns: int, hi_ns: int) -> bool:
    """True when any of the series (JSON array of ids) has a chunk with data in ``[lo_ns, hi_ns)``."""
    return conn.execute(
        "SELECT 1 FROM chunks WHERE series_id IN (SELECT value FROM json_each(?))"
        " AND start_ts > ? AND start_ts < ? AND end_ts >= ? LIMIT 1",
        (ids_json, lo_ns - DAY_NS, hi_ns, lo_ns),
    ).fetchone() is not None


def decode(chunk: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays (times, values, status) of a chunk row from :func:`overlapping`."""
    times = np.frombuffer(chunk[3], dtype="<i8")
    vals = np.frombuffer(chunk[4], dtype="<f8")
    status = np.zeros(len(times), dtype=np.int64) if chunk[5] is None else np.frombuffer(chunk[5], dtype="<i8")
    return times, vals, status


def merge(chunks: list[tuple], times: np.ndarray, vals: np.ndarray, codes: np.ndarray):
    """Merge stored chunks with a new sorted, unique batch; on equal timestamps the new value wins."""
    if not chunks:
        return times, vals, codes
    parts = [decode(c) for c in chunks] + [(times, vals, codes)]
    t = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    s = np.concatenate([p[2] for p in parts])
    order = np.argsort(t, kind="stable")  # stable: the new batch (last) comes last among equal timestamps
    t, v, s = t[order], v[order], s[order]
    keep = np.append(t[1:] != t[:-1], True)
    return t[keep], v[keep], s[keep]


def write_chunks(conn: sqlite3.Connection, sid: int, times: np.ndarray, vals: np.ndarray, codes: np.ndarray) -> None:
    """Store sorted, unique arrays of one series as day chunks, each with its 15-min and 1-h rollups.

    The caller has removed any chunk sharing an hour with these arrays and checked that no row does.
    """
    vals = np.where(np.isfinite(vals), vals, np.nan)
    days = times // DAY_NS
    cuts = np.flatnonzero(days[1:] != days[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [len(times)]])
    # Rollup buckets never cross a day, so the whole batch's buckets are computed once and sliced per chunk.
    rollups = [partials(times, vals, res * NS) for res in CHUNK_ROLLUPS_S]
    firsts = times[bounds[:-1]]
    cut_at = [np.searchsorted(p["bucket"], (firsts // (res * NS)) * (res * NS)) for p, res in zip(rollups, CHUNK_ROLLUPS_S)]
    records = []
    for i, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        t, v, s = times[a:b], vals[a:b], codes[a:b]
        blobs = [p[c[i]: c[i + 1] if i + 1 < len(c) else len(p)].tobytes() for p, c in zip(rollups, cut_at)]
        records.append((sid, int(t[0]), int(t[-1]), b - a, t.astype("<i8").tobytes(), v.astype("<f8").tobytes(),
                        s.astype("<i8").tobytes() if s.any() else None, *blobs))
    conn.executemany(
        "INSERT INTO chunks (series_id, start_ts, end_ts, n, times, vals, status, r900, r3600)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        records,
    )


def partials(times: np.ndarray, vals: np.ndarray, res_ns: int) -> np.ndarray:
    """Rollup buckets of sorted, unique arrays (NaN = missing) as a :data:`PARTIAL` array."""
    buckets = (times // res_ns) * res_ns
    starts = np.flatnonzero(np.append(True, buckets[1:] != buckets[:-1]))
    finite = np.isfinite(vals)
    out = np.empty(len(starts), dtype=PARTIAL)
    out["bucket"] = buckets[starts]
    out["n"] = np.add.reduceat(finite.astype(np.int64), starts)
    out["nrows"] = np.diff(np.append(starts, len(times)))
    out["total"] = np.add.reduceat(np.where(finite, vals, 0.0), starts)
    out["vmin"] = np.minimum.reduceat(np.where(finite, vals, np.inf), starts)
    out["vmax"] = np.maximum.reduceat(np.where(finite, vals, -np.inf), starts)
    last_idx = np.maximum.reduceat(np.where(finite, np.arange(len(times)), -1), starts)
    out["vlast"] = np.where(last_idx >= 0, vals[np.maximum(last_idx, 0)], np.nan)
    return out


def read_partials(conn: sqlite3.Connection, ids_json: str, res: int, lo_ns: int, hi_ns: int):
    """Rollup buckets at ``res`` [s] of the chunks of several series with buckets in ``[lo_ns, hi_ns)``.

    Returns (series ids, PARTIAL array), in the order the chunks come from SQLite. The blobs are joined and decoded
    in one go (one ``frombuffer`` and one filter for all chunks, not numpy calls per chunk: a week of a plant's
    material counters is tens of thousands of chunks).
    """
    rows = conn.execute(
        f"SELECT series_id, r{int(res)} FROM chunks WHERE series_id IN (SELECT value FROM json_each(?))"
        " AND start_ts > ? AND start_ts < ? AND end_ts >= ?",
        (ids_json, lo_ns - DAY_NS, hi_ns, lo_ns),
    ).fetchall()
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=PARTIAL)
    sids, blobs = zip(*rows)
    p = np.frombuffer(b"".join(blobs), dtype=PARTIAL)
    sid = np.repeat(np.array(sids, dtype=np.int64), _lengths(blobs, PARTIAL.itemsize))
    keep = (p["bucket"] >= lo_ns) & (p["bucket"] < hi_ns)
    return sid[keep], p[keep]


def _lengths(blobs: tuple, itemsize: int) -> np.ndarray:
    """Number of items of ``itemsize`` bytes in each blob."""
    return np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)) // itemsize


def explode(conn: sqlite3.Connection, sid: int, chunks: list[tuple]) -> tuple[int, int] | None:
    """Move chunks into the ``points`` table (rows) and delete them; return their time extent or None.

    The caller recomputes the rollups over the returned extent (``SQLiteStore._update_rollups``).
    """
    if not chunks:
        return None
    for chunk in chunks:
        times, vals, status = decode(chunk)
        values = vals.astype(object)
        values[np.isnan(vals)] = None  # NaN -> NULL
        items = values.tolist()
        conn.executemany(
            "INSERT OR REPLACE INTO points (series_id, ts, value, status) VALUES (?, ?, ?, ?)",
            zip(itertools.repeat(sid), times.tolist(), items, status.tolist()),
        )
    conn.executemany("DELETE FROM chunks WHERE id = ?", [(c[0],) for c in chunks])
    return min(c[1] for c in chunks), max(c[2] for c in chunks)


def read_range(conn: sqlite3.Connection, ids_json: str, lo_ns: int, hi_ns: int):
    """Values of the chunks of several series in ``[lo_ns, hi_ns)``: arrays (series_id, ts, value, status), in the
    order the chunks come from SQLite (each chunk's values in time order).

    All chunks' blobs are joined and decoded at once (one ``frombuffer`` per column and one time filter), not chunk
    by chunk: the per-chunk numpy calls cost more than the data when a read covers thousands of short chunks.
    """
    rows = conn.execute(
        "SELECT series_id, times, vals, status FROM chunks"
        " WHERE series_id IN (SELECT value FROM json_each(?)) AND start_ts > ? AND start_ts < ? AND end_ts >= ?",
        (ids_json, lo_ns - DAY_NS, hi_ns, lo_ns),
    ).fetchall()
    if not rows:
        return _cat([], np.int64), _cat([], np.int64), _cat([], float), _cat([], np.int64)
    sids, t_blobs, v_blobs, s_blobs = zip(*rows)
    lengths = _lengths(t_blobs, 8)
    times = np.frombuffer(b"".join(t_blobs), dtype="<i8")
    vals = np.frombuffer(b"".join(v_blobs), dtype="<f8")
    if len(vals) != len(times):
        raise ValueError("chunk rows with times and values of different lengths")
    status = np.zeros(len(times), dtype=np.int64)
    flagged = [i for i, blob in enumerate(s_blobs) if blob is not None]
    if flagged:
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for i in flagged:
            status[offsets[i]:offsets[i + 1]] = np.frombuffer(s_blobs[i], dtype="<i8")
    sid = np.repeat(np.array(sids, dtype=np.int64), lengths)
    keep = (times >= lo_ns) & (times < hi_ns)
    return (sid[keep], times[keep].astype(np.int64, copy=False), vals[keep].astype(float, copy=False),
            status[keep])


def _cat(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def window_rows(sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, w_ns: int, agg: str) -> dict:
    """Aggregate raw values sorted by (series, time) into aligned windows; see :func:`combine`.

    The same as :func:`combine` of one partial per value (a bucket per value: n = 1 where the value is present),
    computed on the values themselves without building those partials.
    """
    if len(ts) == 0:
        return combine(sid, np.zeros(0, dtype=PARTIAL), w_ns, agg)
    windows = (ts // w_ns) * w_ns
    starts = np.flatnonzero(np.append(True, (windows[1:] != windows[:-1]) | (sid[1:] != sid[:-1])))
    finite = np.isfinite(vals)
    n = np.add.reduceat(finite.astype(np.int64), starts)
    keys_sid, keys_w = sid[starts], windows[starts]
    if agg == "count":
        return {"series_id": keys_sid, "ts": keys_w, "value": n}
    if agg in ("sum", "mean"):
        out = np.add.reduceat(np.where(finite, vals, 0.0), starts)
        if agg == "mean":
            out = out / np.maximum(n, 1)
    elif agg == "min":
        out = np.minimum.reduceat(np.where(finite, vals, np.inf), starts)
    elif agg == "max":
        out = np.maximum.reduceat(np.where(finite, vals, -np.inf), starts)
    else:  # last: the last present value of each window
        last_idx = np.maximum.reduceat(np.where(finite, np.arange(len(vals)), -1), starts)
        out = vals[np.maximum(last_idx, 0)]
    has = n > 0
    return {"series_id": keys_sid[has], "ts": keys_w[has], "value": out[has]}


def combine(sid: np.ndarray, p: np.ndarray, w_ns: int, agg: str) -> dict:
    """Aggregate partials (:data:`PARTIAL`, sorted by series then bucket) into aligned windows like the SQL path.

    Missing values are ignored; a window without any present value is omitted, except for ``count``, which (like SQL
    ``count(value)`` over stored rows) reports 0 for a window holding only missing values.
    Returns columns ``series_id``, ``ts`` (window start [ns]) and ``value``.
    """
    if len(p) == 0:
        return {"series_id": np.zeros(0, dtype=np.int64), "ts": np.zeros(0, dtype=np.int64), "value": np.zeros(0)}
    windows = (p["bucket"] // w_ns) * w_ns
    starts = np.flatnonzero(np.append(True, (windows[1:] != windows[:-1]) | (sid[1:] != sid[:-1])))
    present = p["n"] > 0
    n = np.add.reduceat(p["n"], starts)
    keys_sid, keys_w = sid[starts], windows[starts]
    if agg == "count":
        return {"series_id": keys_sid, "ts": keys_w, "value": n}
    if agg in ("sum", "mean"):
        out = np.add.reduceat(np.where(present, p["total"], 0.0), starts)
        if agg == "mean":
            out = out / np.maximum(n, 1)
    elif agg == "min":
        out = np.minimum.reduceat(np.where(present, p["vmin"], np.inf), starts)
    elif agg == "max":
        out = np.maximum.reduceat(np.where(present, p["vmax"], -np.inf), starts)
    else:  # last: buckets are in time order, so the last present one holds the window's last value
        last_idx = np.maximum.reduceat(np.where(present, np.arange(len(p)), -1), starts)
        out = p["vlast"][np.maximum(last_idx, 0)]
    has = n > 0
    return {"series_id": keys_sid[has], "ts": keys_w[has], "value": out[has]}
