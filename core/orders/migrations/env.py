"""Alembic environment: migrations run on the connection :func:`core.orders.db.ensure_schema` passes, inside its
transaction (which holds the migration lock), so that two processes starting at once never migrate twice."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
