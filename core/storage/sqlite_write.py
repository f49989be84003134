"""Write path of the embedded store: rows, columnar chunks and the rollups kept with them.

Values that only append update the rollups incrementally; out-of-order and repeated values make the touched buckets be
recomputed from the rows (see :mod:`core.storage.sqlite_rollups`). Large ``write_arrays`` calls go to columnar day
chunks (:mod:`core.storage.sqlite_chunks`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable

import numpy as np

from core.errors import StoreError
from core.model import Point, SeriesKey
from core.storage import sqlite_chunks as ck
from core.storage.base import ROLLUP_RESOLUTIONS_S, SeriesBatch
from core.storage.sqlite_conn import SQLiteConnections
from core.storage.sqlite_rollups import (
    _CLOSE_COARSE,
    _COARSE_S,
    _MIN_NS,
    _ROLLUP_MERGE_UPDATE,
    _ROLLUP_MERGE_UPSERT,
    NS,
    _bucket_rows,
    _coarse_rows_sql,
)

log = logging.getLogger("core.storage.sqlite")


class _Tails:
    """What one connection knows of each series' tail: the newest stored timestamp (``_MIN_NS``: none) and, per coarse
    resolution, the newest bucket with a rollup row (``_MIN_NS``: none).

    Why: a collector writes thousands of series every second; asking SQLite for every tail before each write cost as
    much as a tenth of the write. Valid while no other connection commits (``PRAGMA data_version`` unchanged) and none
    of our transactions rolls back; entries a write cannot predict are forgotten and read again.
    """

    def __init__(self, version: int) -> None:
        self.version = version
        self.newest: dict[int, int] = {}
        self.coarse: dict[int, dict[int, int]] = {res: {} for res in _COARSE_S}

    def forget(self, sids) -> None:
        for sid in sids:
            self.newest.pop(sid, None)
            for known in self.coarse.values():
                known.pop(sid, None)


class SQLiteWriting(SQLiteConnections):
    """The write path of a :class:`~core.storage.sqlite.SQLiteStore` (a mixin)."""

    chunk_min_values: int
    _write_lock: threading.Lock

    # -- writing -------------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write_transaction(self):
        """One write transaction of this process's writers; SQLite errors become StoreError naming the file."""
        conn = self._conn()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
                if self._checkpointer is not None:
                    self._after_commit(conn)
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                    with self._series_lock:  # series created in the rolled-back transaction no longer exist
                        self._ids.clear()
                        self._keys.clear()
                        self._batch_keys = None
                    self._forget_tails()
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot write to store {self.path}: {exc}") from exc
                raise

    def write(self, points: Iterable[Point]) -> int:
        index: dict[SeriesKey, int] = {}
        series: list[int] = []
        times: list[int] = []
        values: list[float] = []
        codes: list[int] = []
        for point in points:
            ts = int(point.time_ns)
            status = int(point.status)
            for key, value in point.series_values():
                i = index.get(key)
                if i is None:
                    i = index[key] = len(index)
                series.append(i)
                times.append(ts)
                values.append(np.nan if value is None else value)
                codes.append(status)
        if not series:
            return 0
        return self.write_batch(SeriesBatch(tuple(index), np.array(series, dtype=np.int64),
                                            np.array(times, dtype=np.int64), np.array(values, dtype=float),
                                            np.array(codes, dtype=np.int64)))

    def write_batch(self, batch: SeriesBatch) -> int:
        if len(batch) == 0:
            return 0
        series = np.asarray(batch.series, dtype=np.int64)
        with self._write_transaction() as conn:
            # Writers pass the same keys tuple with every batch: keep its series ids (-1 = not looked up yet) instead
            # of hashing every key again (a rollback clears this cache with the others).
            if self._batch_keys is None or self._batch_keys[0] is not batch.keys:
                self._batch_keys = (batch.keys, np.full(len(batch.keys), -1, dtype=np.int64))
            key_sids = self._batch_keys[1]
            used = np.unique(series)
            for i in used[key_sids[used] < 0].tolist():  # only the keys this batch uses
                key_sids[i] = self._series_id(conn, batch.keys[i])
            self._write_columns(conn, key_sids[series], np.asarray(batch.times_ns, dtype=np.int64),
                                np.asarray(batch.values, dtype=float), np.asarray(batch.status, dtype=np.int64))
        return len(batch)

    def write_arrays(self, key: SeriesKey, times_ns, values, status=None, *, bulk: bool = False) -> int:
        times = np.asarray(times_ns, dtype=np.int64)
        vals = np.asarray(values, dtype=float)
        if times.shape != vals.shape:
            raise StoreError(f"write_arrays: {len(times)} timestamps but {len(vals)} values for {key}")
        codes = np.zeros(len(times), dtype=np.int64) if status is None else np.asarray(status, dtype=np.int64)
        if codes.shape != times.shape:
            raise StoreError(f"write_arrays: {len(times)} timestamps but {len(codes)} status codes for {key}")
        if len(times) == 0:
            return 0
        # Bulk path: sort, keep the last of repeated timestamps (a later write replaces an earlier one), hand the
        # values to SQLite as one JSON array (parsed in C by json_each) instead of one Python tuple per row.
        n_in = len(times)
        if len(times) > 1 and not (np.diff(times) > 0).all():
            order = np.argsort(times, kind="stable")
            times, vals, codes = times[order], vals[order], codes[order]
            keep = np.append(times[1:] != times[:-1], True)
            times, vals, codes = times[keep], vals[keep], codes[keep]
        finite = np.isfinite(vals)
        with self._write_transaction() as conn:
            sid = self._series_id(conn, key)
            self._forget_tails([sid])
            lo, hi = ck.hour_span(int(times[0]), int(times[-1]))
            fresh = conn.execute(
                "SELECT 1 FROM points WHERE series_id = ? AND ts >= ? AND ts < ? LIMIT 1", (sid, lo, hi)
            ).fetchone() is None
            old = ck.overlapping(conn, sid, lo, hi)
            if fresh and (old or bulk or len(times) >= self.chunk_min_values):
                # Columnar path: no row shares an hour with this batch; merge with the chunks that do.
                conn.executemany("DELETE FROM chunks WHERE id = ?", [(c[0],) for c in old])
                ck.write_chunks(conn, sid, *ck.merge(old, times, vals, codes))
            else:
                # Row path; chunks in the touched hours become rows first (one place per value).
                span = ck.explode(conn, sid, old)
                values_json = self._bulk_insert(conn, sid, times, vals, finite, codes)
                if fresh and span is None:
                    # Nothing stored in the touched hours: the rollups follow from this batch alone (after the lazy
                    # coarse buckets before it got their rows).
                    for res in _COARSE_S:
                        conn.execute(_CLOSE_COARSE[res], (sid, (int(times[0]) // (res * NS)) * res * NS))
                    self._insert_rollups(conn, sid, times, vals, finite, values_json)
                else:
                    lo_ns, hi_ns = int(times[0]), int(times[-1])
                    if span is not None:
                        lo_ns, hi_ns = min(lo_ns, span[0]), max(hi_ns, span[1])
                    self._update_rollups(conn, [sid], lo_ns, hi_ns)
        return n_in

    @staticmethod
    def _bulk_insert(conn: sqlite3.Connection, sid: int, times: np.ndarray, vals: np.ndarray, finite: np.ndarray,
                     codes: np.ndarray) -> str | None:
        """Insert sorted, unique rows of one series; regular timestamps are computed in SQL from the array index.

        Returns the values as a JSON array when the timestamps were regular (reused for the rollups), else None.
        """
        items = vals.tolist()
        if not finite.all():
            # JSON has no NaN: missing values become null (stored as NULL).
            for i in np.flatnonzero(~finite).tolist():
                items[i] = None
        step = int(times[1] - times[0]) if len(times) > 1 else 0
        regular = len(times) < 3 or bool((np.diff(times) == step).all())
        values_json = None
        if regular:
            values_json = json.dumps(items)
            conn.execute(
                "INSERT OR REPLACE INTO points (series_id, ts, value, status) "
                "SELECT ?, ? + key * ?, value, 0 FROM json_each(?)",
                (sid, int(times[0]), step, values_json),
            )
        else:
            conn.executemany(
                "INSERT OR REPLACE INTO points (series_id, ts, value, status) VALUES (?, ?, ?, 0)",
                zip(itertools.repeat(sid), times.tolist(), items),
            )
        bad = np.flatnonzero(codes != 0)
        if len(bad):
            conn.executemany(
                "UPDATE points SET status = ? WHERE series_id = ? AND ts = ?",
                zip(codes[bad].tolist(), itertools.repeat(sid), times[bad].tolist()),
            )
        return values_json

    @staticmethod
    def _insert_rollups(conn: sqlite3.Connection, sid: int, times: np.ndarray, vals: np.ndarray, finite: np.ndarray,
                        values_json: str | None = None) -> None:
        """Compute the 1 min / 15 min / 1 h rollups of a sorted batch with numpy (same numbers as the SQL path)."""
        rows = []
        for res in ROLLUP_RESOLUTIONS_S:
            res_ns = res * NS
            buckets = (times // res_ns) * res_ns
            starts = np.flatnonzero(np.append(True, buckets[1:] != buckets[:-1]))
            if len(starts) == len(times) and values_json is not None:
                # One value per bucket (e.g. 1-min data in 1-min buckets): each rollup row is its point; let SQLite
                # build them from the same JSON array.
                step = int(times[1] - times[0]) if len(times) > 1 else 0
                conn.execute(
                    f"""INSERT OR REPLACE INTO rollup (res, series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast)
                    SELECT {res}, ?1, ((?2 + key * ?3) / {res_ns}) * {res_ns}, value IS NOT NULL, 1, value, value, value,
                           CASE WHEN value IS NOT NULL THEN ?2 + key * ?3 END, value
                    FROM json_each(?4)""",
                    (sid, int(times[0]), step, values_json),
                )
                continue
            rows.extend(_bucket_rows(res, np.full(len(times), sid), buckets, times, vals, finite, starts))
        conn.executemany(
            "INSERT OR REPLACE INTO rollup (res, series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def _tails(self, conn: sqlite3.Connection, usid: np.ndarray) -> _Tails:
        """The tails of ``usid`` (sorted series ids), read from the file for the series this connection does not know."""
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        tails = getattr(self._local, "tails", None)
        if tails is None or tails.version != version:
            tails = self._local.tails = _Tails(version)
        missing = [s_ for s_ in usid.tolist() if s_ not in tails.newest]
        if missing:
            coarse = ", ".join(f"(SELECT max(bucket) FROM rollup WHERE res = {res} AND series_id = j.value)"
                               for res in _COARSE_S)
            for row in conn.execute(
                f"SELECT j.value, (SELECT max(ts) FROM points WHERE series_id = j.value), {coarse} FROM json_each(?) AS j",
                (json.dumps(missing),),
            ):
                tails.newest[row[0]] = _MIN_NS if row[1] is None else row[1]
                for res, bucket in zip(_COARSE_S, row[2:]):
                    tails.coarse[res][row[0]] = _MIN_NS if bucket is None else bucket
        return tails

    def _forget_tails(self, sids=None) -> None:
        tails = getattr(self._local, "tails", None)
        if tails is not None:
            if sids is None:
                self._local.tails = None
            else:
                tails.forget(sids)

    def _write_columns(self, conn: sqlite3.Connection, sid: np.ndarray, ts: np.ndarray, vals: np.ndarray,
                       codes: np.ndarray) -> None:
        """Store values of many series as rows and bring their rollups up to date (inside a write transaction)."""
        order = np.lexsort((ts, sid))
        sid, ts, vals, codes = sid[order], ts[order], vals[order], codes[order]
        if len(sid) > 1:
            # A repeated (series, timestamp) keeps the value written last: the stable sort kept the batch order.
            last = np.append((sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1]), True)
            if not last.all():
                sid, ts, vals, codes = sid[last], ts[last], vals[last], codes[last]
        finite = np.isfinite(vals)
        starts = np.flatnonzero(np.append(True, sid[1:] != sid[:-1]))
        counts = np.diff(np.append(starts, len(sid)))
        usid = sid[starts]
        lo = ts[starts].copy()
        hi = ts[starts + counts - 1].copy()
        moved = self._explode_chunks(conn, usid, lo, hi)  # widens lo/hi where chunks became rows
        tails = self._tails(conn, usid)
        series = usid.tolist()
        newest = np.array([tails.newest[s_] for s_ in series], dtype=np.int64)
        # Series whose values all come after their newest stored one get their rollups updated incrementally; the
        # others (late or repeated timestamps, chunks just turned into rows) are recomputed exactly from the rows.
        appending = (lo > newest) & ~moved
        items = vals.tolist()
        for i in np.flatnonzero(~finite).tolist():
            items[i] = None  # missing: stored as NULL
        conn.executemany("INSERT OR REPLACE INTO points (series_id, ts, value, status) VALUES (?, ?, ?, ?)",
                         zip(sid.tolist(), ts.tolist(), items, codes.tolist()))
        reread = set()
        if appending.any():
            mask = np.repeat(appending, counts)
            coarse = {res: np.repeat(np.array([tails.coarse[res][s_] for s_ in series], dtype=np.int64), counts)[mask]
                      for res in _COARSE_S}
            complete, closed = self._add_to_rollups(conn, sid[mask], ts[mask], vals[mask], finite[mask],
                                                    np.repeat(newest, counts)[mask], coarse)
            reread.update(closed)
            if not complete:
                log.warning("%s: rollup rows were missing for appended values; recomputing them from the rows",
                            self.path)
                appending[:] = False  # recompute every touched bucket exactly below
        if not appending.all():
            ranges: dict[tuple[int, int], list[int]] = {}
            for s_, a, b in zip(usid[~appending].tolist(), lo[~appending].tolist(), hi[~appending].tolist()):
                ranges.setdefault((a, b), []).append(s_)
            if len(ranges) > 16:  # many different late ranges: one pass over their union costs less
                ranges = {(min(r[0] for r in ranges), max(r[1] for r in ranges)): usid[~appending].tolist()}
            for (a, b), sids in ranges.items():
                self._update_rollups(conn, sids, a, b)
            reread.update(usid[~appending].tolist())
        for s_, h in zip(series, hi.tolist()):
            if h > tails.newest[s_]:
                tails.newest[s_] = h
        tails.forget(reread)  # their coarse rows changed: read their tails again next time

    @staticmethod
    def _explode_chunks(conn: sqlite3.Connection, usid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Turn the chunks sharing an hour with the new rows into rows (a value lives in one place only).

        ``lo``/``hi`` (per series [ns]) are widened in place to the moved values; returns which series had chunks moved.
        """
        moved = np.zeros(len(usid), dtype=bool)
        if conn.execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is None:
            return moved
        h_lo, _ = ck.hour_span(int(lo.min()), int(lo.min()))
        _, h_hi = ck.hour_span(int(hi.max()), int(hi.max()))
        # One query for all series (ids and extents only), then the hour span of each series.
        candidates = conn.execute(
            "SELECT id, series_id, start_ts, end_ts FROM chunks WHERE series_id IN (SELECT value FROM json_each(?))"
            " AND start_ts > ? AND start_ts < ? AND end_ts >= ?",
            (json.dumps(usid.tolist()), h_lo - ck.DAY_NS, h_hi, h_lo),
        ).fetchall()
        if not candidates:
            return moved
        pos = {s_: i for i, s_ in enumerate(usid.tolist())}
        for cid, s_, c_start, c_end in candidates:
            i = pos[s_]
            a, b = ck.hour_span(int(lo[i]), int(hi[i]))
            if c_start < b and c_end >= a:
                chunk = conn.execute("SELECT id, start_ts, end_ts, times, vals, status FROM chunks WHERE id = ?",
                                     (cid,)).fetchone()
                span = ck.explode(conn, s_, [chunk])
                assert span is not None  # the extent of the one chunk given
                lo[i], hi[i] = min(int(lo[i]), span[0]), max(int(hi[i]), span[1])
                moved[i] = True
        return moved

    @staticmethod
    def _add_to_rollups(conn: sqlite3.Connection, sid: np.ndarray, ts: np.ndarray, vals: np.ndarray,
                        finite: np.ndarray, newest: np.ndarray, coarse: dict[int, np.ndarray]) -> tuple[bool, set]:
        """Fold appended values (sorted by series, time) into the rollups: counts and sums add up, extremes widen, the
        newest value is last.

        Per value: ``newest`` is the series' newest stored timestamp before this write (``_MIN_NS``: none) and
        ``coarse[res]`` its newest coarse bucket with a row. At 1 min only the bucket holding ``newest`` can have a row
        (updated in place); the other buckets are new. Coarse buckets are kept lazily (:func:`_coarse_rows_sql`).
        Returns whether every expected 1-min row was there (else the caller recomputes from the rows) and the series
        whose coarse rows were written.
        """
        updates: list[tuple] = []
        coarse_updates: list[tuple] = []
        upserts: list[tuple] = []
        closing: list[tuple] = []
        s_starts = np.flatnonzero(np.append(True, sid[1:] != sid[:-1]))  # first and last value of each series
        s_ends = np.append(s_starts[1:], len(sid)) - 1
        for res in ROLLUP_RESOLUTIONS_S:
            res_ns = res * NS
            bucket = (ts // res_ns) * res_ns
            newest_bucket = np.where(newest != _MIN_NS, (newest // res_ns) * res_ns, _MIN_NS)
            if res not in _COARSE_S:
                starts = np.flatnonzero(np.append(True, (bucket[1:] != bucket[:-1]) | (sid[1:] != sid[:-1])))
                rows = _bucket_rows(res, sid, bucket, ts, vals, finite, starts)
                for row, old in zip(rows, (bucket[starts] == newest_bucket[starts]).tolist()):
                    (updates if old else upserts).append(row)
                continue
            # Coarse: the bucket of the newest stored value is kept current when it has a row; the buckets this batch
            # closes get their rows from the 1-min rows (below); the batch's last bucket stays lazy.
            keep = (bucket == newest_bucket) & (coarse[res] == newest_bucket)
            if keep.any():
                k_sid, k_bucket = sid[keep], bucket[keep]
                starts = np.flatnonzero(np.append(True, (k_bucket[1:] != k_bucket[:-1]) | (k_sid[1:] != k_sid[:-1])))
                coarse_updates.extend(_bucket_rows(res, k_sid, k_bucket, ts[keep], vals[keep], finite[keep], starts))
            opened = np.where(newest[s_starts] != _MIN_NS, newest_bucket[s_starts], bucket[s_starts])
            closing.extend((res, s_, b) for s_, b, o in zip(sid[s_starts].tolist(), bucket[s_ends].tolist(),
                                                              opened.tolist()) if o < b)
        conn.executemany(_ROLLUP_MERGE_UPSERT, upserts)
        before = conn.total_changes
        conn.executemany(_ROLLUP_MERGE_UPDATE, updates)
        complete = conn.total_changes - before == len(updates)
        # Coarse rows in place before closing: a closing row is built from 1-min rows that already hold this batch.
        conn.executemany(_ROLLUP_MERGE_UPDATE, coarse_updates)
        for res in _COARSE_S:
            conn.executemany(_CLOSE_COARSE[res], [(s_, b) for r, s_, b in closing if r == res])
        return complete, {s_ for _r, s_, _b in closing}

    def _update_rollups(self, conn: sqlite3.Connection, sids: list[int], lo_ns: int, hi_ns: int) -> None:
        """Recompute the rollup buckets of ``sids`` touching ``[lo_ns, hi_ns]`` exactly from the stored rows."""
        ids = json.dumps(sids)
        lo = (lo_ns // (60 * NS)) * 60 * NS
        hi = (hi_ns // (60 * NS) + 1) * 60 * NS
        conn.execute(
            f"""INSERT OR REPLACE INTO rollup (res, series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast)
            SELECT 60, series_id, (ts / {60 * NS}) * {60 * NS} AS b, count(value), count(*), sum(value), min(value),
                   max(value), max(CASE WHEN value IS NOT NULL THEN ts END), NULL
            FROM points WHERE series_id IN (SELECT value FROM json_each(?)) AND ts >= ? AND ts < ?
            GROUP BY series_id, b""",
            (ids, lo, hi),
        )
        conn.execute(
            """UPDATE rollup SET vlast = (SELECT p.value FROM points p
                    WHERE p.series_id = rollup.series_id AND p.ts = rollup.last_ts)
            WHERE res = 60 AND series_id IN (SELECT value FROM json_each(?)) AND bucket >= ? AND bucket < ?""",
            (ids, lo, hi),
        )
        for res in _COARSE_S:
            res_ns = res * NS
            c_lo = (lo_ns // res_ns) * res_ns
            c_hi = (hi_ns // res_ns + 1) * res_ns
            # Buckets before the range that were still lazy get their rows first (the invariant of _coarse_rows_sql).
            conn.executemany(_CLOSE_COARSE[res], [(s_, c_lo) for s_ in sids])
            conn.execute(
                f"INSERT OR REPLACE INTO rollup (res, series_id, bucket, n, nrows, total, vmin, vmax, last_ts, vlast) "
                f"SELECT {res}, * FROM ("
                + _coarse_rows_sql(res, "FROM rollup f WHERE f.res = 60 AND f.series_id IN (SELECT value FROM json_each(?))"
                                        " AND f.bucket >= ? AND f.bucket < ?")
                + ")",
                (ids, c_lo, c_hi),
            )
