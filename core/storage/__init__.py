"""Storage: the :class:`~core.storage.base.Store` interface and its backends.

Use :func:`open_store` with a URL so that callers never name a backend class:

- a plain path or ``sqlite:///path.db``: the embedded SQLite store (default);
- ``influx://...``: InfluxDB 2.x (see ``core.storage.influx``).
"""

from __future__ import annotations

from core.errors import StoreError
from core.storage.base import AGGREGATIONS, ROLLUP_RESOLUTIONS_S, SeriesInfo, Store

__all__ = ["AGGREGATIONS", "ROLLUP_RESOLUTIONS_S", "SeriesInfo", "Store", "open_store"]


def open_store(url: str) -> Store:
    """Open a store from its URL.

    Parameters
    ----------
    url : str
        ``path.db``, ``sqlite:///path.db`` or ``influx://host:port?...``.

    Raises
    ------
    StoreError
        When the URL names an unknown scheme or the store cannot be opened.
    """
    url = str(url)
    scheme = url.split("://", 1)[0] if "://" in url else "sqlite"
    if scheme == "sqlite":
        from core.storage.sqlite import SQLiteStore, parse_sqlite_url

        return SQLiteStore(parse_sqlite_url(url))
    if scheme in ("influx", "influxs"):
        from core.storage.influx import InfluxStore

        return InfluxStore.from_url(url)
    raise StoreError(f"unknown store URL scheme {scheme!r} in {url!r}; valid: a file path, sqlite:///path, influx://host:port")
