"""The embedded default store: one SQLite file in WAL mode.

Why SQLite: it needs no server, and in WAL mode a collector process can write while a dashboard process reads the same
file. Points live in a clustered ``(series_id, ts)`` table, so a time-range query for one series is one index range
scan, and a repeated timestamp replaces the earlier value like InfluxDB does. Rollups at 1 min, 15 min and 1 h stay
exact: values that only append update them incrementally, out-of-order and repeated values make the touched buckets be
recomputed from the rows. The coarse (15-min, 1-h) rows are kept lazily (see :func:`_coarse_rows_sql`).

Large ``write_arrays`` calls (backfill, import) are stored as columnar day chunks instead of rows (see
:mod:`core.storage.sqlite_chunks` for the layout and the invariants that keep every answer exact); queries merge rows
and chunks, each read in one snapshot so a concurrent writer never shows half a change.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from core.errors import StoreError
from core.model import Point, SeriesKey
from core.storage import sqlite_chunks as ck
from core.storage.base import (
    ROLLUP_RESOLUTIONS_S,
    SeriesInfo,
    SeriesBatch,
    Store,
    TagFilter,
    TimeLike,
    check_query_args,
    choose_rollup,
    match_tags,
    pivot_frame,
)

log = logging.getLogger(__name__)

NS = 1_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    field TEXT NOT NULL,
    UNIQUE (measurement, tags, field)
);
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL,
    status INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup (
    res INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    nrows INTEGER NOT NULL,
    total REAL,
    vmin REAL,
    vmax REAL,
    last_ts INTEGER,
    vlast REAL,
    PRIMARY KEY (res, series_id, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: Layout version in ``meta``: 1 = eager rollups at every resolution; 2 = lazily kept coarse rollups and day chunks.
#: A version-1 file is a valid version-2 file (every coarse row present), so it is upgraded in place on open.
_SCHEMA_VERSION = "2"

# Raw window aggregation in SQL; 'last' uses SQLite's documented bare-column rule with a single max().
_RAW_AGG = {
    "mean": "avg(value)",
    "sum": "sum(value)",
    "min": "min(value)",
    "max": "max(value)",
    "count": "count(value)",
}
_ROLLUP_AGG = {
    "mean": "sum(total) / sum(n)",
    "sum": "sum(total)",
    "min": "min(vmin)",
    "max": "max(vmax)",
    "count": "sum(n)",
}


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
_MIN_NS = -(2**63)
_MAX_NS = 2**63 - 1


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

def parse_sqlite_url(url: str) -> Path:
    """Return the file path of ``sqlite:///path`` or of a plain path."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") - 1 :] if url.startswith("sqlite:////") else url[len("sqlite:///") :])
    if url.startswith("sqlite://"):
        raise StoreError(f"store URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return Path(url)


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


class SQLiteStore(Store):
    """Embedded store in one SQLite file.

    Parameters
    ----------
    path : str or Path
        Database file; created with its folder when missing.
    cache_mb : int
        Page cache per connection [MiB].
    chunk_min_values : int
        A ``write_arrays`` call with at least this many values, or marked ``bulk=True``, goes to columnar chunks (when
        no row shares its hours); smaller live writes are stored as rows, so that a trickle of small writes never
        rewrites a day's chunk each time.
    """

    def __init__(self, path: str | os.PathLike, cache_mb: int = 256,
                 chunk_min_values: int = ck.CHUNK_MIN_VALUES) -> None:
        self.path = Path(path).expanduser()
        self.description = f"sqlite:///{self.path}"
        self._cache_kib = int(cache_mb) * 1024
        self.chunk_min_values = max(1, int(chunk_min_values))
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._series_lock = threading.Lock()
        self._ids: dict[SeriesKey, int] = {}
        self._keys: dict[int, SeriesKey] = {}
        self._batch_keys: tuple[tuple, np.ndarray] | None = None
        self._checkpointer: threading.Thread | None = None
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            with conn:
                conn.executescript(_SCHEMA + ck.CHUNK_SCHEMA)
                ck.check_schema(conn, self.path)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (_SCHEMA_VERSION,))
                (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if not version.isdigit() or int(version) > int(_SCHEMA_VERSION):
                    raise StoreError(f"store {self.path} has layout version {version}, newer than this Wattline "
                                     f"understands ({_SCHEMA_VERSION}); upgrade Wattline to read it")
                if version != _SCHEMA_VERSION:
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (_SCHEMA_VERSION,))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}. Check the path and its permissions.") from exc

    # -- connections ---------------------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{self._cache_kib}")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA busy_timeout=30000")
            if self._checkpointer is not None:
                conn.execute("PRAGMA wal_autocheckpoint=0")
            self._local.conn = conn
            self._all_conns = getattr(self, "_all_conns", []) + [conn]
        return conn

    def checkpoint_in_background(self, interval_s: float = 0.5, max_wal_mb: int = 64) -> None:
        """Copy the write-ahead log into the database from a thread of its own instead of inside the writes.

        Why: by default SQLite checkpoints inside the COMMIT that takes the log past 1,000 pages; with thousands of
        series written each second nearly every commit pays for a checkpoint (measured: a quarter of the write time).
        Here a thread checkpoints after every commit without blocking the writer; a commit that finds the log larger
        than ``max_wal_mb`` [MiB] checkpoints and rewinds it itself, so the log stays bounded. For the process that
        writes (the collectors' writer process); readers are unaffected.
        """
        if self._checkpointer is not None:
            return
        self._wal_limit = int(max_wal_mb) << 20
        self._checkpoint_wanted = threading.Event()
        self._checkpoint_lock = threading.Lock()
        for conn in getattr(self, "_all_conns", []):
            conn.execute("PRAGMA wal_autocheckpoint=0")
        # Supervised: an unexpected failure is logged and counted (supervisor.failures) and the loop restarts;
        # a dead checkpointer would let the log grow unnoticed.
        from core.supervise import Supervisor

        self.supervisor = Supervisor(prefix="storage")
        self._checkpointer = self.supervisor.thread("sqlite-checkpoint",
                                                    lambda: self._checkpoint_loop(float(interval_s)))

    def _checkpoint_loop(self, interval_s: float) -> None:
        while not self._closed:
            self._checkpoint_wanted.wait(interval_s)
            self._checkpoint_wanted.clear()
            if self._closed:
                return
            try:
                with self._checkpoint_lock:
                    self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except (sqlite3.Error, StoreError) as exc:  # busy or closing: the next round or a commit catches up
                log.debug("background checkpoint of %s: %s", self.path, exc)

    def _after_commit(self, conn: sqlite3.Connection) -> None:
        self._checkpoint_wanted.set()
        try:
            wal_bytes = os.stat(f"{self.path}-wal").st_size
        except OSError:
            return
        if wal_bytes > self._wal_limit:
            # Only one checkpoint runs at a time (a second one would just report busy): wait for the thread's. The
            # write is committed already, so a failing checkpoint is only logged.
            try:
                with self._checkpoint_lock:
                    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.Error as exc:
                log.warning("checkpoint of %s failed: %s", self.path, exc)
                return
            if busy:
                log.debug("%s: log not rewound (a reader holds an old snapshot); trying after the next commit", self.path)

    def close(self) -> None:
        """Close every connection this store opened."""
        self._closed = True
        if self._checkpointer is not None:
            self._checkpoint_wanted.set()
            self._checkpointer.join(10)
            self._checkpointer = None
        for conn in getattr(self, "_all_conns", []):
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing twice from another thread
                pass
        self._all_conns = []
        self._local = threading.local()

    # -- series ids ------------------------------------------------------------------------------------------------------
    def _load_series(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT id, measurement, tags, field FROM series").fetchall()
        with self._series_lock:
            for sid, measurement, tags, field in rows:
                if sid not in self._keys:
                    key = SeriesKey(measurement, tuple((k, v) for k, v in json.loads(tags)), field)
                    self._ids[key] = sid
                    self._keys[sid] = key

    def _series_id(self, conn: sqlite3.Connection, key: SeriesKey) -> int:
        sid = self._ids.get(key)
        if sid is not None:
            return sid
        tags = json.dumps([list(kv) for kv in key.tags], ensure_ascii=False, separators=(",", ":"))
        conn.execute(
            "INSERT OR IGNORE INTO series (measurement, tags, field) VALUES (?, ?, ?)", (key.measurement, tags, key.field)
        )
        sid = conn.execute(
            "SELECT id FROM series WHERE measurement = ? AND tags = ? AND field = ?", (key.measurement, tags, key.field)
        ).fetchone()[0]
        with self._series_lock:
            self._ids[key] = sid
            self._keys[sid] = key
        return sid

    def _matching_series(self, measurement: str | None, field: str | None, tags: TagFilter | None) -> list[int]:
        conn = self._conn()
        (max_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM series").fetchone()
        if max_id not in self._keys and max_id:
            self._load_series(conn)  # another process added series since we last looked
        return sorted(
            sid
            for sid, key in list(self._keys.items())
            if (measurement is None or key.measurement == measurement)
            and (field is None or key.field == field)
            and match_tags(key.tag_dict, tags)
        )

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
        updates, coarse_updates, upserts, closing = [], [], [], []
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

    # -- reading -------------------------------------------------------------------------------------------------------
    def query(
        self,
        measurement: str,
        field: str,
        start: TimeLike,
        stop: TimeLike,
        tags: TagFilter | None = None,
        window_s: int | None = None,
        agg: str = "mean",
        pivot: str | None = None,
    ) -> pd.DataFrame:
        check_query_args(field, window_s, agg)
        start_ns, stop_ns = self._range_ns(start, stop)
        if window_s is not None and choose_rollup(int(window_s), start_ns, stop_ns) is None:
            # A range not aligned to a rollup: rollups for its aligned stretch, raw points for the ends (exact).
            from core.storage.query_parts import answer_in_parts

            parted = answer_in_parts(self, measurement, field, start_ns, stop_ns, tags, int(window_s), agg)
            if parted is not None:
                return pivot_frame(parted, pivot) if pivot else parted
        sids = self._matching_series(measurement, field, tags)
        conn = self._conn()
        ids = json.dumps(sids)
        with _snapshot(conn):
            chunked = bool(sids) and ck.any_in_range(conn, ids, start_ns, stop_ns)
            res = None if window_s is None else choose_rollup(int(window_s), start_ns, stop_ns)
            if chunked and res in ck.CHUNK_ROLLUPS_S:
                # Partial aggregates from the rows' rollup table and the chunks' own rollups (disjoint buckets).
                rows = ck.combine(*self._merged_partials(conn, ids, res, start_ns, stop_ns), int(window_s) * NS, agg)
                frame = self._frame(rows, ["series_id", "ts", "value"], agg == "count")
                return pivot_frame(frame, pivot) if pivot else frame
            if chunked:
                # Chunks have no 1-min rollup: merge their raw values with the rows and aggregate in numpy.
                sid, ts, value, status = self._merged_raw(conn, ids, start_ns, stop_ns)
                if window_s is None:
                    frame = self._frame({"series_id": sid, "ts": ts, "value": value, "status": status},
                                        ["series_id", "ts", "value", "status"])
                else:
                    rows = ck.window_rows(sid, ts, value, int(window_s) * NS, agg)
                    frame = self._frame(rows, ["series_id", "ts", "value"], agg == "count")
                return pivot_frame(frame, pivot) if pivot else frame
            if window_s is None:
                sql = """SELECT series_id, ts, value, status FROM points
                         WHERE series_id IN (SELECT value FROM json_each(?)) AND ts >= ? AND ts < ?
                         ORDER BY series_id, ts"""
                rows = conn.execute(sql, (ids, start_ns, stop_ns)).fetchall() if sids else []
                columns = ["series_id", "ts", "value", "status"]
            else:
                w_ns = int(window_s) * NS
                if res is None:
                    expr = "max(ts), value" if agg == "last" else _RAW_AGG[agg]
                    where = "AND value IS NOT NULL" if agg == "last" else ""
                    sql = f"""SELECT series_id, (ts / {w_ns}) * {w_ns} AS b, {expr} FROM points
                              WHERE series_id IN (SELECT value FROM json_each(?)) AND ts >= ? AND ts < ? {where}
                              GROUP BY series_id, b ORDER BY series_id, b"""
                else:
                    expr = "max(last_ts), vlast" if agg == "last" else _ROLLUP_AGG[agg]
                    where = "AND last_ts IS NOT NULL" if agg == "last" else ""
                    sql = f"""SELECT series_id, (bucket / {w_ns}) * {w_ns} AS b, {expr} FROM {_rollup_source_sql(res)}
                              WHERE TRUE {where} GROUP BY series_id, b ORDER BY series_id, b"""
                params = {"ids": ids, "lo": start_ns, "hi": stop_ns}
                rows = conn.execute(sql, params if res else (ids, start_ns, stop_ns)).fetchall() if sids else []
                if agg == "last":
                    rows = [(r[0], r[1], r[3]) for r in rows]
                rows = [r for r in rows if r[2] is not None]
                columns = ["series_id", "ts", "value"]
        frame = self._frame(rows, columns, agg == "count" and window_s is not None)
        return pivot_frame(frame, pivot) if pivot else frame

    @staticmethod
    def _merged_partials(conn: sqlite3.Connection, ids: str, res: int, start_ns: int, stop_ns: int):
        """Rollup buckets at ``res`` of rows and chunks in ``[start_ns, stop_ns)``, sorted by (series, bucket)."""
        rows = conn.execute(
            f"SELECT series_id, bucket, n, nrows, total, vmin, vmax, vlast FROM {_rollup_source_sql(res)}",
            {"ids": ids, "lo": start_ns, "hi": stop_ns},
        ).fetchall()
        c_sid, c_part = ck.read_partials(conn, ids, res, start_ns, stop_ns)
        part = np.zeros(len(rows), dtype=ck.PARTIAL)
        if rows:
            cols = list(zip(*rows))
            for i, name in enumerate(ck.PARTIAL.names, start=1):
                # NULLs (buckets without a present value) become NaN; n = 0 makes them ignored.
                part[name] = np.array(cols[i], dtype=float if part.dtype[name].kind == "f" else np.int64)
        sid = np.concatenate([np.array([r[0] for r in rows], dtype=np.int64), c_sid])
        part = np.concatenate([part, c_part])
        order = np.lexsort((part["bucket"], sid))
        return sid[order], part[order]

    @staticmethod
    def _merged_raw(conn: sqlite3.Connection, ids: str, start_ns: int, stop_ns: int):
        """Raw values of rows and chunks in ``[start_ns, stop_ns)`` as arrays sorted by (series, time); NaN = missing."""
        rows = conn.execute(
            "SELECT series_id, ts, value, status FROM points"
            " WHERE series_id IN (SELECT value FROM json_each(?)) AND ts >= ? AND ts < ?",
            (ids, start_ns, stop_ns),
        ).fetchall()
        c_sid, c_ts, c_val, c_status = ck.read_range(conn, ids, start_ns, stop_ns)
        if rows:
            r_sid, r_ts, r_val, r_status = zip(*rows)
            r_val = np.array([np.nan if v is None else v for v in r_val], dtype=float)
            sid = np.concatenate([np.array(r_sid, dtype=np.int64), c_sid])
            ts = np.concatenate([np.array(r_ts, dtype=np.int64), c_ts])
            value = np.concatenate([r_val, c_val])
            status = np.concatenate([np.array(r_status, dtype=np.int64), c_status])
        else:
            sid, ts, value, status = c_sid, c_ts, c_val, c_status
        order = np.lexsort((ts, sid))
        return sid[order], ts[order], value[order], status[order]

    def _frame(self, rows: list[tuple] | dict, columns: list[str], integer_values: bool = False) -> pd.DataFrame:
        import pandas as pd  # here, not at import: a collector's writer process never builds a frame

        if isinstance(rows, dict):
            frame = pd.DataFrame(rows, columns=columns)
        else:
            frame = pd.DataFrame.from_records(rows, columns=columns)
        tag_keys = sorted({k for sid in frame["series_id"].unique() for k, _ in self._keys[int(sid)].tags})
        frame["time"] = pd.to_datetime(frame["ts"].astype("int64"), unit="ns", utc=True)
        frame["value"] = frame["value"].astype("int64" if integer_values else "float64")
        if "status" in frame:
            frame["status"] = frame["status"].astype("int64")
        for tag in tag_keys:
            lookup = {sid: self._keys[sid].tag_dict.get(tag) for sid in frame["series_id"].unique()}
            frame[tag] = frame["series_id"].map(lookup)
        ordered = ["time", *tag_keys, "value"] + (["status"] if "status" in frame else [])
        return frame[ordered].reset_index(drop=True)

    def last_values(self, measurement: str, field: str, tags: TagFilter | None = None) -> pd.DataFrame:
        conn = self._conn()
        rows = []
        with _snapshot(conn):
            for sid in self._matching_series(measurement, field, tags):
                row = conn.execute(
                    "SELECT ts, value, status FROM points WHERE series_id = ? ORDER BY ts DESC LIMIT 1", (sid,)
                ).fetchone()
                chunk = conn.execute(
                    "SELECT id, start_ts, end_ts, times, vals, status FROM chunks WHERE series_id = ?"
                    " ORDER BY start_ts DESC LIMIT 1", (sid,)
                ).fetchone()
                if chunk is not None and (row is None or chunk[2] > row[0]):
                    times, vals, status = ck.decode(chunk)
                    value = float(vals[-1])
                    row = (int(times[-1]), None if np.isnan(value) else value, int(status[-1]))
                if row is not None:
                    rows.append((sid, *row))
        return self._frame(rows, ["series_id", "ts", "value", "status"])

    def series(self, measurement: str | None = None) -> list[SeriesInfo]:
        conn = self._conn()
        result = []
        with _snapshot(conn):
            for sid in self._matching_series(measurement, None, None):
                first, last, c_first, c_last = conn.execute(
                    "SELECT (SELECT ts FROM points WHERE series_id = ?1 ORDER BY ts LIMIT 1),"
                    " (SELECT ts FROM points WHERE series_id = ?1 ORDER BY ts DESC LIMIT 1),"
                    " (SELECT start_ts FROM chunks WHERE series_id = ?1 ORDER BY start_ts LIMIT 1),"
                    " (SELECT end_ts FROM chunks WHERE series_id = ?1 ORDER BY start_ts DESC LIMIT 1)",
                    (sid,),
                ).fetchone()
                firsts = [t for t in (first, c_first) if t is not None]
                lasts = [t for t in (last, c_last) if t is not None]
                if not firsts:
                    continue
                # Hourly rollups count every stored row exactly once (duplicates were replaced on write), chunks
                # their values; a value lives in one place only.
                (count,) = conn.execute(
                    f"SELECT (SELECT coalesce(sum(nrows), 0) FROM {_rollup_source_sql(3600)})"
                    " + (SELECT coalesce(sum(n), 0) FROM chunks WHERE series_id = :sid)",
                    {"ids": f"[{sid}]", "lo": _MIN_NS, "hi": _MAX_NS, "sid": sid},
                ).fetchone()
                result.append(SeriesInfo(self._keys[sid], int(count), int(min(firsts)), int(max(lasts))))
        return result


@contextlib.contextmanager
def _snapshot(conn: sqlite3.Connection):
    """Run several reads in one read transaction (one WAL snapshot), unless a transaction is already open."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


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
