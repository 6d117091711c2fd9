"""Schema migrations: Alembic, run in-process under an advisory lock."""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from accrual.store.database import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant shared by every Accrual process: two servers starting at once migrate in turn.
_MIGRATION_LOCK = 0x41_43_43_52_55_41_4C  # "ACCRUAL"


def _config(conn: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision this code knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    with db.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, *, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to `revision`; return (before, after)."""
    with db.engine.connect() as conn:
        conn.execute(sa.text("select pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
        conn.commit()
        try:
            before = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
            command.upgrade(_config(conn), revision)
            conn.commit()
            after = MigrationContext.configure(conn).get_current_revision()
            conn.commit()
        finally:
            conn.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()
    return before, after


def downgrade(db: Database, *, revision: str) -> None:
    """Take the schema back to `revision` (development only: facts are never dropped in production)."""
    with db.engine.connect() as conn:
        command.downgrade(_config(conn), revision)
        conn.commit()
