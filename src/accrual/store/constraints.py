"""Database refusals translated into the errors callers understand.

A violated constraint is looked up by its name; the refusal of an append-only trigger
(SQLSTATE AC001) becomes `AppendOnlyViolation`. Anything not registered stays a database
error: a bug to fix, not a message to show.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from accrual.domain import errors

APPEND_ONLY_SQLSTATE = "AC001"


class AppendOnlyViolation(errors.Conflict):
    title = "Facts cannot be changed"


_BY_CONSTRAINT: dict[str, Callable[[], errors.AccrualError]] = {}


def register(constraint: str, make_error: Callable[[], errors.AccrualError]) -> None:
    """Say which error a violation of `constraint` means."""
    _BY_CONSTRAINT[constraint] = make_error


def translate(exc: sa.exc.DBAPIError) -> errors.AccrualError | None:
    """The error a database refusal means to a caller, or None if it means a bug."""
    diag = getattr(exc.orig, "diag", None)
    sqlstate: str | None = getattr(diag, "sqlstate", None)
    constraint: str | None = getattr(diag, "constraint_name", None)
    if sqlstate == APPEND_ONLY_SQLSTATE:
        return AppendOnlyViolation(getattr(diag, "message_primary", None) or "the table is append-only")
    if constraint is not None and constraint in _BY_CONSTRAINT:
        return _BY_CONSTRAINT[constraint]()
    return None
