"""Work orders: every finding above a threshold becomes a routed order, and its savings get verified.

The loop is finding -> work order -> owner team -> fix -> verified savings. Orders, the findings they carry and their
append-only audit log are relational records in an SQL database (SQLAlchemy 2, Alembic migrations): an embedded SQLite
file beside the embedded store by default (``<store>.orders.db``), or PostgreSQL (``postgresql+psycopg://...``) for
plants that share one server.

Modules: :mod:`core.orders.config` (thresholds, teams, routing rules), :mod:`core.orders.db` (engine, schema version
check and migrations), :mod:`core.orders.schema` (tables), :mod:`core.orders.service` (opening, routing, status flow,
verification), :mod:`core.orders.kpi` (the KPIs a chief data officer reviews, as pure functions returning dicts).
"""

from __future__ import annotations

from core.errors import WattlineError


class OrdersError(WattlineError):
    """Base of the work-order errors: a runtime problem (exit 1) unless a subclass says otherwise."""


class OrdersUsageError(OrdersError):
    """Bad input: an unknown order, an illegal transition, a user without the role or site (exit 2)."""

    exit_code = 2


class OrderConflict(OrdersError):
    """The order changed since the caller read it (optimistic version check); read it again and retry."""


class OrderNotFound(OrdersUsageError):
    """No order with that id (or none the user may see)."""


class NotAllowed(OrdersUsageError):
    """The user's role or sites do not allow the action."""


class IllegalTransition(OrdersUsageError):
    """The order's status does not allow the action (the message lists what it allows)."""
