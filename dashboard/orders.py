"""The dashboard's work-order database: which one, and opening it lazily, once per app (worker).

The database is the one ``wattline orders`` uses (:func:`core.orders.db.orders_url`): ``--orders-db URL`` (or
``$WATTLINE_ORDERS_DB``), else ``<store>.orders.db`` beside an embedded store. The default file is read only once it
exists (``wattline orders sync`` or ``wattline demo`` makes it): the dashboard does not create databases beside a store
it only reads. An explicit URL is opened (and migrated) like ``wattline orders`` does.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from core.errors import ConfigError

#: Key of the provider in ``flask_app.extensions``.
EXTENSION = "wattline_orders"


def resolve_orders_db(store_url: str, orders_db: str | None) -> tuple[str | None, bool]:
    """The work-order database URL for a store, and whether it was given explicitly.

    Parameters
    ----------
    store_url : str
        The dashboard's store.
    orders_db : str, optional
        ``--orders-db``; else ``$WATTLINE_ORDERS_DB``; else beside an embedded store.

    Returns
    -------
    (str or None, bool)
        The URL (None for an InfluxDB store without ``--orders-db``: no orders) and True when it was given.

    Raises
    ------
    ConfigError
        For a URL that is neither SQLite nor PostgreSQL (the message lists both forms).
    """
    from core.orders.db import orders_url

    given = orders_db or os.environ.get("WATTLINE_ORDERS_DB") or None
    if given:
        return orders_url(store_url, given), True
    try:
        return orders_url(store_url, None), False
    except ConfigError:
        return None, False  # InfluxDB store and no --orders-db: the dashboard runs without work orders


def resolve_orders_rules(rules: str | os.PathLike | None) -> str | None:
    """``--orders-rules``, else ``$WATTLINE_ORDERS_RULES`` (as ``wattline orders``), else None."""
    value = rules or os.environ.get("WATTLINE_ORDERS_RULES") or None
    return None if value is None else str(value)


def _sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]).expanduser() if url.startswith("sqlite:///") else None


class OrdersProvider:
    """Opens the :class:`core.orders.service.OrderService` on first use, once, in whichever thread asks first.

    Parameters
    ----------
    url : str or None
        Database URL; None: no orders (``get`` returns None).
    rules : str, optional
        Orders settings YAML (teams, routing); read when the service opens.
    explicit : bool
        False for the default file beside the store: ``get`` returns None until that file exists.
    """

    def __init__(self, url: str | None, rules: str | None = None, explicit: bool = False) -> None:
        self.url = url
        self.rules = rules
        self.explicit = explicit
        self._service: Any = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        """True when there is a database to read (an explicit URL, or the default file exists)."""
        if self.url is None:
            return False
        path = _sqlite_path(self.url)
        return self.explicit or path is None or path.exists()

    def get(self):
        """The service, or None when there is no orders database (yet); OrdersError/ConfigError propagate."""
        if self._service is None:
            if not self.available():
                return None
            with self._lock:
                if self._service is None:
                    self._service = open_service(self.url, self.rules)
        return self._service

    def close(self) -> None:
        with self._lock:
            service, self._service = self._service, None
        if service is not None:
            service.engine.dispose()


def open_service(url: str, rules: str | None):
    """Open the database (create or migrate its schema) and the service with the rules file's teams."""
    from core.orders.config import read_orders_config
    from core.orders.db import open_orders_db
    from core.orders.service import OrderService

    config = read_orders_config(Path(rules) if rules else None)  # a bad rules file fails before the database
    return OrderService(open_orders_db(url), config)


def orders_provider(server) -> OrdersProvider | None:
    """The app's provider (``server`` is the Flask app), None when the app was built without one."""
    return server.extensions.get(EXTENSION)


def current_orders():
    """The order service of the app serving the current request, or None without an orders database."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    provider = orders_provider(current_app)
    return None if provider is None else provider.get()


class LazyService:
    """Stands for the provider's service where an object is needed at start-up (the JSON API blueprint), opening it on
    the first call instead."""

    def __init__(self, provider: OrdersProvider) -> None:
        self._provider = provider

    def __getattr__(self, name: str):
        service = self._provider.get()
        if service is None:
            from core.orders import OrdersError

            raise OrdersError(f"orders database {self._provider.url} does not exist yet; run 'wattline orders sync'")
        return getattr(service, name)
