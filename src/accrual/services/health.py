"""Is the system ready to serve: the database answers and its schema is current."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from accrual.store import migrate
from accrual.store.database import Database


@dataclasses.dataclass(frozen=True)
class Readiness:
    ready: bool
    database: str
    schema_revision: str | None
    expected_revision: str


def readiness(db: Database) -> Readiness:
    expected = migrate.head_revision()
    try:
        current = migrate.current_revision(db)
    except sa.exc.SQLAlchemyError as exc:
        return Readiness(False, f"unreachable: {type(exc).__name__}", None, expected)
    return Readiness(current == expected, "ok", current, expected)
