"""Connections, layout and series catalogue of the embedded store (:class:`core.storage.sqlite.SQLiteStore`).

The SQL schema and its version, the per-thread connections in WAL mode, the background checkpointer, and the mapping
between series keys and their integer ids.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import StoreError
from core.model import SeriesKey
from core.storage.base import TagFilter, match_tags

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("core.storage.sqlite")

#: Page cache of a store written by a collector [MiB] (:meth:`SQLiteConnections.tune_for_writing`; the default of
#: 256 MiB is for readers): with 10,000 series it grew to ~80 MiB in a collector's writer process; measured with
#: 50,000-value writes over 10,000 series: 2.88 us per value with 4 MiB, 2.76 us with 16 MiB, 2.79 us with 256 MiB.
WRITER_CACHE_MB = 8

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


def parse_sqlite_url(url: str) -> Path:
    """Return the file path of ``sqlite:///path`` or of a plain path."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") - 1 :] if url.startswith("sqlite:////") else url[len("sqlite:///") :])
    if url.startswith("sqlite://"):
        raise StoreError(f"store URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return Path(url)


class SQLiteConnections:
    """Connections, checkpoints and the series catalogue of a :class:`~core.storage.sqlite.SQLiteStore` (a mixin: the
    store's ``__init__`` sets the attributes used here)."""

    path: Path
    _cache_kib: int
    _local: threading.local
    _series_lock: threading.Lock
    _ids: dict[SeriesKey, int]
    _keys: dict[int, SeriesKey]
    _field_index: tuple[int, dict[tuple[str, str], list[int]]]  # (len(_keys) when built, ids by measurement/field)
    _batch_keys: tuple[tuple, np.ndarray] | None
    _checkpointer: threading.Thread | None
    _closed: bool

    if TYPE_CHECKING:  # from core.storage.base.Store, which the store class adds
        def _range_ns(self, start: object, stop: object) -> tuple[int, int]: ...

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
            self._all_conns = [*getattr(self, "_all_conns", []), conn]
        return conn

    def set_cache_mb(self, cache_mb: float) -> None:
        """Bound the page cache of every connection of this store to ``cache_mb`` [MiB] (open ones included).

        For a process that only writes (the collectors' writer process): its writes touch one leaf page per series
        and table, which SQLite reads back from the operating system's file cache at little cost (measured with 10,000
        series and 50,000-value writes: 2.76 us per value with 16 MiB, 2.79 us with 256 MiB), while a large cache
        fills with pages that are never read again and is counted in the process's memory.
        """
        self._cache_kib = max(1, int(cache_mb * 1024))
        for conn in getattr(self, "_all_conns", []):
            with contextlib.suppress(sqlite3.Error):  # a connection closed by another thread
                conn.execute(f"PRAGMA cache_size=-{self._cache_kib}")

    def tune_for_writing(self) -> None:
        """Settings for a process whose store is written by a collector: WAL checkpoints in a thread of their own
        (:meth:`checkpoint_in_background`) and a page cache of :data:`WRITER_CACHE_MB` (:meth:`set_cache_mb`)."""
        self.checkpoint_in_background()
        self.set_cache_mb(WRITER_CACHE_MB)

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
            with contextlib.suppress(sqlite3.Error):  # closing twice from another thread
                conn.close()
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
        # Another process (the collector's writer process, say) may have added series since we last looked. Compare
        # the count, not the newest id: when this process adds a series after the other one did, the newest id is
        # its own and the other's series would stay unknown here (a collector's plant series missing from reads).
        (count,) = conn.execute("SELECT count(*) FROM series").fetchone()
        if count != len(self._keys):
            self._load_series(conn)
        # Series ids by (measurement, field), built once per set of known series: scanning every key on each query
        # cost ~0.1 s per raw read with 20,000 material series.
        known = len(self._keys)
        cached = getattr(self, "_field_index", None)
        if cached is None or cached[0] != known:
            index: dict[tuple[str, str], list[int]] = {}
            for sid, key in list(self._keys.items()):
                index.setdefault((key.measurement, key.field), []).append(sid)
            cached = (known, {k: sorted(v) for k, v in index.items()})
            self._field_index = cached
        if measurement is not None and field is not None:
            candidates = cached[1].get((measurement, field), [])
        else:
            candidates = sorted(sid for (m, f), sids in cached[1].items() for sid in sids
                                if (measurement is None or m == measurement) and (field is None or f == field))
        if not tags:
            return list(candidates)
        return [sid for sid in candidates if match_tags(self._keys[sid].tag_dict, tags)]


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
