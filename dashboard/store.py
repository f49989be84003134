"""The app's store: opened on first use from the URL in the app's config, never at import time.

One store per app, shared by the request threads. Why not one per request: an InfluxDB store starts a spool and a
replay thread when opened, and the SQLite store already gives each thread its own connection to the WAL file, so a
collector in another thread or process keeps writing while the dashboard reads. The server in
:mod:`dashboard.serve` uses a fixed pool of threads, so the number of SQLite connections stays bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.storage import Store, open_store

#: Key of the provider in ``flask_app.extensions``.
EXTENSION = "wattline_store"


class StoreProvider:
    """Opens a store lazily, once, in whichever thread asks first.

    Parameters
    ----------
    url : str
        Store URL for :func:`core.storage.open_store`.
    opener : callable
        Opens a store from the URL (tests pass a counting wrapper).
    shared : Store, optional
        An already open store to use instead of opening one (e.g. the demo's, so one process holds one InfluxDB
        spool). The caller owns it: :meth:`close` leaves it open.
    """

    def __init__(self, url: str, opener: Callable[[str], Store] = open_store, shared: Store | None = None) -> None:
        self.url = str(url)
        self._opener = opener
        self._shared = shared
        self._store: Store | None = shared
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """True once the store has been opened (and not closed since)."""
        return self._store is not None

    def get(self) -> Store:
        """Return the store, opening it on first use; StoreError propagates and the next call retries."""
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._opener(self.url)
                store = self._store
        return store

    def close(self) -> None:
        """Close the store if this provider opened it; a later :meth:`get` opens it again. A shared store stays open."""
        if self._shared is not None:
            return
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
