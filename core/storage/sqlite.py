"""The embedded default store: one SQLite file in WAL mode.

Why SQLite: it needs no server, and in WAL mode a collector process can write while a dashboard process reads the same
file. Points live in a clustered ``(series_id, ts)`` table, so a time-range query for one series is one index range
scan, and a repeated timestamp replaces the earlier value like InfluxDB does. Rollups at 1 min, 15 min and 1 h stay
exact: values that only append update them incrementally, out-of-order and repeated values make the touched buckets be
recomputed from the rows. The coarse (15-min, 1-h) rows are kept lazily (see :func:`_coarse_rows_sql`).

Large ``write_arrays`` calls (backfill, import) are stored as columnar day chunks instead of rows (see
:mod:`core.storage.sqlite_chunks` for the layout and the invariants that keep every answer exact); queries merge rows
and chunks, each read in one snapshot so a concurrent writer never shows half a change.

The store is assembled from one module per job: :mod:`core.storage.sqlite_conn` (schema, connections, checkpoints,
series catalogue), :mod:`core.storage.sqlite_write` (write path), :mod:`core.storage.sqlite_rollups` (rollup SQL) and
:mod:`core.storage.sqlite_query` (queries).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from core.errors import StoreError
from core.model import SeriesKey
from core.storage import sqlite_chunks as ck
from core.storage.base import Store
from core.storage.sqlite_conn import _SCHEMA, _SCHEMA_VERSION, _snapshot, parse_sqlite_url
from core.storage.sqlite_query import SQLiteQueries
from core.storage.sqlite_rollups import _MAX_NS, _MIN_NS, NS, _rollup_source_sql
from core.storage.sqlite_write import SQLiteWriting

__all__ = ["NS", "SQLiteStore", "parse_sqlite_url"]
# Kept importable from here for callers and tests that reach into the layout.
_REEXPORTED = (_MAX_NS, _MIN_NS, _SCHEMA_VERSION, _rollup_source_sql, _snapshot)


class SQLiteStore(SQLiteQueries, SQLiteWriting, Store):
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
