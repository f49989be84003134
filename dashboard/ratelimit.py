"""Events per key in a sliding window, shared by the dashboard's gunicorn workers through one SQLite file.

The one rate-limiting mechanism of the dashboard: failed logins per client address and user name
(:class:`dashboard.auth.LoginLimiter`) and requests per API token (:func:`dashboard.api_mount.mount_api`) both count
here. With a shared file (WAL, mode 600, in the dashboard's private cache folder) every worker process enforces the
same limit; without one, or when the file cannot be used, the count lives in this process (a request is never refused
for a broken file).
"""

from __future__ import annotations

import collections
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


class WindowLimiter:
    """At most ``max_events`` per key within any ``window_s``.

    Parameters
    ----------
    max_events : int
        Events allowed per key within ``window_s``.
    window_s : float
        Length of the sliding window [s].
    path : path-like, optional
        SQLite file the events are kept in, shared by every worker process; None: in this process only.
    table : str
        Table of the file (one file may hold several limiters).
    what : str
        What is counted, for the log message when the file cannot be used.
    """

    def __init__(self, max_events: int, window_s: float, path: str | os.PathLike | None = None, *,
                 table: str = "events", what: str = "events") -> None:
        if not re.fullmatch(r"[a-z_]+", table):
            raise ValueError(f"table name {table!r}: lower-case letters and _ only")
        self.max_events, self.window_s, self.table, self.what = int(max_events), float(window_s), table, what
        self._events: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self._local = threading.local()
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self._shared(lambda db: db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT, t REAL)"))
            self._shared(lambda db: db.execute(f"CREATE INDEX IF NOT EXISTS {table}_key ON {table} (key)"))

    def _shared(self, op):
        """``op(connection)`` on the shared file (its result), or None without one or when it fails."""
        if self.path is None:
            return None
        try:
            db = getattr(self._local, "db", None)
            if db is None:
                db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                os.chmod(self.path, 0o600)
                self._local.db = db
            return op(db)
        except (sqlite3.Error, OSError) as exc:
            log.warning("rate limit file %s not usable (%s); counting %s in this worker only", self.path, exc,
                        self.what)
            return None

    def _prune(self, key: str, now: float) -> collections.deque:
        q = self._events[key]
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def _wait(self, db, key: str, t: float) -> float:
        n, first = db.execute(f"SELECT COUNT(*), MIN(t) FROM {self.table} WHERE key = ? AND t > ?",
                              (key, t - self.window_s)).fetchone()
        return first + self.window_s - t if n >= self.max_events else 0.0

    def _record_shared(self, db, keys: Iterable[str], t: float) -> bool:
        db.executemany(f"INSERT INTO {self.table} (key, t) VALUES (?, ?)", [(k, t) for k in keys])
        db.execute(f"DELETE FROM {self.table} WHERE t <= ?", (t - self.window_s,))
        return True

    def _record_local(self, keys: Iterable[str], now: float) -> None:
        for key in keys:
            self._prune(key, now).append(now)
        if len(self._events) > 10_000:  # keep memory bounded under a spray of keys
            for key in [k for k, q in self._events.items() if not q]:
                del self._events[key]

    def retry_after(self, keys: Iterable[str], now: float | None = None) -> float:
        """Seconds until an event is allowed again for every one of ``keys`` (0 when it is allowed now)."""
        keys = list(keys)
        if self.path is not None:
            t = time.time() if now is None else now
            shared = self._shared(lambda db: max((self._wait(db, k, t) for k in keys), default=0.0))
            if shared is not None:
                return shared
        now = time.monotonic() if now is None else now
        with self._lock:
            wait = 0.0
            for key in keys:
                q = self._prune(key, now)
                if len(q) >= self.max_events:
                    wait = max(wait, q[0] + self.window_s - now)
            return wait

    def record(self, keys: Iterable[str], now: float | None = None) -> None:
        """Count one event for each key."""
        keys = list(keys)
        if self.path is not None:
            t = time.time() if now is None else now
            if self._shared(lambda db: self._record_shared(db, keys, t)):
                return
        now = time.monotonic() if now is None else now
        with self._lock:
            self._record_local(keys, now)

    def admit(self, key: str, now: float | None = None) -> float:
        """Count an event for ``key`` if the limit allows it, in one step (two workers cannot both take the last
        place): 0 when it was admitted, else the seconds until one will be (and nothing is counted)."""
        if self.path is not None:
            t = time.time() if now is None else now

            def take(db) -> float:
                db.execute("BEGIN IMMEDIATE")
                try:
                    wait = self._wait(db, key, t)
                    if wait <= 0:
                        self._record_shared(db, [key], t)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                return wait

            shared = self._shared(take)
            if shared is not None:
                return shared
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._prune(key, now)
            if len(q) >= self.max_events:
                return q[0] + self.window_s - now
            self._record_local([key], now)
            return 0.0

    def forget(self, key: str) -> None:
        """Drop the events of ``key`` (a good login clears the user name's failures)."""
        self._shared(lambda db: db.execute(f"DELETE FROM {self.table} WHERE key = ?", (key,)))
        with self._lock:
            self._events.pop(key, None)
