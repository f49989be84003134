"""Tables of the work-order database (SQLAlchemy 2 declarative models).

The schema itself is created and changed only by the Alembic migrations in ``core/orders/migrations`` (frozen copies
of these definitions); these models are how the code reads and writes it. Times are stored as naive UTC and come back
as aware UTC datetimes on every backend (:class:`UTCDateTime`).

``order_audit`` is append-only: the code has no path that updates or deletes an audit row, and a trigger in the
database refuses ``UPDATE`` and ``DELETE`` on it (SQLite and PostgreSQL).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Statuses of an order; the first four keep the pattern "open" (one such order per pattern).
STATUSES = ("open", "acknowledged", "in_progress", "resolved", "verified", "rejected")
ACTIVE_STATUSES = ("open", "acknowledged", "in_progress", "resolved")


class UTCDateTime(TypeDecorator):
    """An aware datetime stored as naive UTC (SQLite keeps no offset; PostgreSQL gets ``timestamp``)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give it a time zone")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of the work-order tables."""


class Order(Base):
    """A work order: one finding pattern (machine + kind), its evidence, owner, status and verification."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pattern: Mapped[str] = mapped_column(String(300), index=True)
    #: Equal to ``pattern`` while the order is active, NULL once verified or rejected: a unique column, so that two
    #: writers can never both open an order for the same pattern.
    open_pattern: Mapped[str | None] = mapped_column(String(300), unique=True)
    site: Mapped[str] = mapped_column(String(100))
    line: Mapped[str] = mapped_column(String(100))
    machine: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    severity: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True)
    team: Mapped[str | None] = mapped_column(String(64), index=True)
    rule: Mapped[int | None] = mapped_column(Integer)
    auto_dispatched: Mapped[bool] = mapped_column(Boolean)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    observed_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    observed_end: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    excess_kwh: Mapped[float] = mapped_column(Float)
    cost: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(8))
    co2_kg: Mapped[float | None] = mapped_column(Float)
    explanation: Mapped[str] = mapped_column(Text)
    expected_savings_kwh: Mapped[float] = mapped_column(Float)
    expected_savings_cost: Mapped[float | None] = mapped_column(Float)
    findings_count: Mapped[int] = mapped_column(Integer)
    reassignments: Mapped[int] = mapped_column(Integer, default=0)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    verified_kwh: Mapped[float | None] = mapped_column(Float)
    verified_cost: Mapped[float | None] = mapped_column(Float)
    verified_co2_kg: Mapped[float | None] = mapped_column(Float)
    verified_uncertainty_kwh: Mapped[float | None] = mapped_column(Float)
    verification_method: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy reads it from the class


class OrderFinding(Base):
    """A finding attached to an order (its evidence); a pattern's finding starting at one time is attached once."""

    __tablename__ = "order_findings"
    __table_args__ = (UniqueConstraint("pattern", "start_at", name="uq_order_findings_pattern_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    pattern: Mapped[str] = mapped_column(String(300))
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    excess_kwh: Mapped[float] = mapped_column(Float)
    cost: Mapped[float | None] = mapped_column(Float)
    co2_kg: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[float | None] = mapped_column(Float)
    explanation: Mapped[str | None] = mapped_column(Text)
    run: Mapped[str | None] = mapped_column(String(128))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """One change of an order: who, when, what, with a comment. Append-only (a database trigger refuses changes)."""

    __tablename__ = "order_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)


class Delivery(Base):
    """One notification attempt (webhook or email) for an order event: the delivery log."""

    __tablename__ = "order_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(300))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(Text)
    event_key: Mapped[str | None] = mapped_column(String(200))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
