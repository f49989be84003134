"""Settings of one dashboard app, kept in the Flask config so layouts and callbacks find them per request."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from dashboard.data import resolve_timezone

#: Key of the settings in ``flask_app.config``.
CONFIG_KEY = "WATTLINE_DASHBOARD"


@dataclass(frozen=True)
class DashboardSettings:
    """What a dashboard app needs to know.

    Parameters
    ----------
    store_url : str
        Store URL (:func:`core.storage.open_store`).
    refresh_s : float
        Live page refresh period [s].
    stale_after_s : float
        A series whose newest value is older than this is stale [s]: left out of the current-power KPI and
        highlighted in the series table.
    tz : tzinfo
        Plant time zone for axes and "today".
    plant : core.plant.Plant, optional
        The plant description (sites, time zones, currencies, tariffs, CO2 factors); None without a plant file.
    orders_db : str, optional
        Work-order database URL (:func:`dashboard.orders.resolve_orders_db`); None: no work orders shown.
    orders_db_explicit : bool
        True when ``orders_db`` was given (option or ``$WATTLINE_ORDERS_DB``); False for the default file beside an
        embedded store, which the dashboard reads only once ``wattline orders sync`` has made it.
    orders_rules : str, optional
        Orders settings YAML (teams for reassignment); None: no teams to reassign to.
    api_tokens : str, optional
        Tokens file of the JSON API (:mod:`core.orders.api`); None: no ``/api/v1`` orders routes.
    api_limits : dashboard.api_limits.ApiLimits, optional
        Query sizes and requests per token per minute of ``/api/v1``; None: the defaults.
    """

    store_url: str
    refresh_s: float = 2.0
    stale_after_s: float = 300.0
    tz: dt.tzinfo = field(default_factory=lambda: resolve_timezone(None))
    plant: Any = None
    orders_db: str | None = None
    orders_db_explicit: bool = False
    orders_rules: str | None = None
    api_tokens: str | None = None
    api_limits: Any = None


def current_settings() -> DashboardSettings:
    """Settings of the app serving the current request; defaults outside a request (layout unit tests)."""
    from flask import current_app, has_app_context

    if has_app_context() and CONFIG_KEY in current_app.config:
        return current_app.config[CONFIG_KEY]
    return DashboardSettings(store_url="")
