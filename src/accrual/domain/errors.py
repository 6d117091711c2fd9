"""The errors every layer raises for things a caller did or asked that could not be done.

Each error names what could not be done. Entry points translate the `kind` into their own
language (an HTTP status and problem+json, a CLI exit code); the domain does not know HTTP.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class ErrorKind(enum.Enum):
    INVALID = "invalid"  # the request itself is wrong: a field fails a rule
    NOT_FOUND = "not_found"  # no such thing visible to the caller
    CONFLICT = "conflict"  # the thing exists but its state forbids the request
    FORBIDDEN = "forbidden"  # the caller is known but lacks the right
    UNAUTHENTICATED = "unauthenticated"  # the caller is not known
    UNSUPPORTED_FORMAT = "unsupported_format"  # the request is in a format this endpoint does not read


class AccrualError(Exception):
    """Base of every error Accrual raises on purpose.

    `field` is the JSON pointer (RFC 6901) of the input that caused it, when one did;
    `context` carries facts that help the caller recover (the current state of what conflicted).
    """

    kind: ErrorKind = ErrorKind.INVALID
    title: str = "Request could not be completed"

    def __init__(
        self, detail: str, *, field: str | None = None, context: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.context = dict(context) if context else {}

    @property
    def type_slug(self) -> str:
        """A stable, kebab-case identifier of the error class, used in problem `type` URIs."""
        name = type(self).__name__
        return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


class InvalidInput(AccrualError):
    kind = ErrorKind.INVALID
    title = "Invalid input"


class NotFound(AccrualError):
    kind = ErrorKind.NOT_FOUND
    title = "Not found"


class Conflict(AccrualError):
    kind = ErrorKind.CONFLICT
    title = "Conflict with the current state"


class Forbidden(AccrualError):
    kind = ErrorKind.FORBIDDEN
    title = "Forbidden"


class UnsupportedFormat(AccrualError):
    kind = ErrorKind.UNSUPPORTED_FORMAT
    title = "Unsupported format"


class Unauthenticated(AccrualError):
    kind = ErrorKind.UNAUTHENTICATED
    title = "Unauthenticated"
