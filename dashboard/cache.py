"""A results cache the dashboard's workers share: one SQLite file, entries with an expiry time.

Numbers that many users ask for alike (the overview of a site for a period) are computed once and kept for
``ttl_s``; a key includes what invalidates them (the newest analysis run, the period's edges), so new findings show at
once and new data after at most ``ttl_s``. Every gunicorn worker opens the same file (WAL mode: readers never wait
for a writer); with no file the cache is per process.

Values are pickled. The cache folder is made mode 0700 and refused when anyone but this user could write into it, so
nobody else can plant a pickle there.
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dashboard.errors import DashboardError

#: Key of the cache in ``flask_app.extensions``.
EXTENSION = "wattline_cache"
_log = logging.getLogger(__name__)
DEFAULT_TTL_S = 120.0


class ResultCache:
    """Get-or-compute cache of picklable values.

    Parameters
    ----------
    folder : path-like, optional
        Folder of the shared cache file (made 0700); None keeps entries in this process only.
    ttl_s : float
        Lifetime of an entry [s].
    """

    def __init__(self, folder: str | os.PathLike | None = None, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ttl_s = float(ttl_s)
        self._memory: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self.path: Path | None = None
        self.hits = 0
        self.misses = 0
        self._refreshing: set[str] = set()
        self._refreshed = threading.Condition(self._lock)  # notified when the last background recomputation ends
        if folder is not None:
            folder = Path(folder).expanduser()
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = folder.stat()
            if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise DashboardError(f"dashboard cache folder {folder} must belong to this user and be writable by "
                                     f"nobody else (run: chmod 700 {folder})")
            self.path = folder / "results.sqlite"
            with self._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, expires REAL, value BLOB)")

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection to the cache file (only called when the cache has one: ``self.path`` set)."""
        assert self.path is not None, "an in-memory cache has no database"
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            os.chmod(self.path, 0o600)
            self._local.db = db
        return db

    def get_or_compute(self, key: str, compute: Callable[[], Any], ttl_s: float | None = None,
                       stale_ok: bool = False) -> Any:
        """The cached value of ``key``, or ``compute()`` stored for ``ttl_s`` (default: the cache's).

        With ``stale_ok`` an expired entry that is still held is returned at once and recomputed in a background
        thread (one per key), so a result that takes seconds to compute never holds up a request after the first.
        """
        now = time.time()
        ttl = self.ttl_s if ttl_s is None else float(ttl_s)
        if self.path is None:
            with self._lock:
                hit = self._memory.get(key)
            if hit is not None and hit[0] > now:
                self.hits += 1
                return hit[1]
            if hit is not None and stale_ok:
                self._refresh_later(key, compute, ttl)
                self.hits += 1
                return hit[1]
            value = compute()
            with self._lock:
                if len(self._memory) > 512:
                    self._memory = {k: v for k, v in self._memory.items() if v[0] > now}
                self._memory[key] = (now + ttl, value)
            self.misses += 1
            return value
        try:
            row = self._connect().execute("SELECT expires, value FROM cache WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            row = None  # a broken cache never breaks a page: compute instead
        if row is not None and (row[0] > now or stale_ok):
            if row[0] <= now:
                self._refresh_later(key, compute, ttl)
            self.hits += 1
            return pickle.loads(row[1])
        value = compute()
        self.misses += 1
        self._put(key, value, now + ttl)
        return value

    def _put(self, key: str, value: Any, expires: float) -> None:
        if self.path is None:
            with self._lock:
                self._memory[key] = (expires, value)
            return
        try:
            db = self._connect()
            db.execute("INSERT OR REPLACE INTO cache (key, expires, value) VALUES (?, ?, ?)",
                       (key, expires, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)))
            db.execute("DELETE FROM cache WHERE expires < ?", (time.time() - self.ttl_s,))
        except sqlite3.Error:
            pass

    def _refresh_later(self, key: str, compute: Callable[[], Any], ttl: float) -> None:
        """Recompute ``key`` in a daemon thread unless one already does; a failure is logged and retried later."""
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def run() -> None:
            try:
                value = compute()
                self.misses += 1
                self._put(key, value, time.time() + ttl)
            except Exception:  # noqa: BLE001 - the stale value stays served; the next request after expiry retries
                _log.warning("dashboard cache: recomputing %s failed", key, exc_info=True)
            finally:
                with self._lock:
                    self._refreshing.discard(key)
                    if not self._refreshing:
                        self._refreshed.notify_all()

        threading.Thread(target=run, name=f"cache-refresh-{key[:40]}", daemon=True).start()

    def wait_refreshed(self, timeout_s: float = 10.0) -> bool:
        """Block until no background recomputation runs (tests and benchmarks); False on timeout."""
        with self._refreshed:
            return self._refreshed.wait_for(lambda: not self._refreshing, timeout_s)


def request_cache() -> ResultCache | None:
    """The cache of the app serving the current request; None outside a request (unit tests, the CLI)."""
    from flask import current_app, has_app_context

    return current_app.extensions.get(EXTENSION) if has_app_context() else None


def cache_of(app) -> ResultCache:
    """The app's cache (a per-process one when none was configured)."""
    server = app.server
    cache = server.extensions.get(EXTENSION)
    if cache is None:
        cache = server.extensions[EXTENSION] = ResultCache()
    return cache
