"""Alembic migrations of the work-order database (run by :func:`core.orders.db.ensure_schema`, never by hand)."""
