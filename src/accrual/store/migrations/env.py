"""Alembic environment: runs on the connection `accrual.store.migrate` hands over."""

from __future__ import annotations

from alembic import context

from accrual.store import schema

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    transaction_per_migration=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
