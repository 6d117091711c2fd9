"""Time as a value that is passed in, never read.

Domain and service code receive `now` (or a `Clock`) from an entry point. The system clock
lives in `accrual.integrations.system_clock`, which import-linter keeps out of the domain,
the store and the services; test clocks are stored rows whose frozen time only moves when
advanced.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Protocol


class NaiveDatetime(ValueError):
    """A datetime without a time zone was given where an instant is required."""


class Clock(Protocol):
    """Something that can say what time it is, as a tz-aware UTC instant."""

    def now(self) -> dt.datetime: ...


def require_aware(instant: dt.datetime, *, name: str = "instant") -> dt.datetime:
    """Return `instant` converted to UTC; raise `NaiveDatetime` if it has no time zone."""
    if instant.tzinfo is None or instant.tzinfo.utcoffset(instant) is None:
        raise NaiveDatetime(f"{name} must be timezone-aware, got {instant.isoformat()}")
    return instant.astimezone(dt.UTC)


@dataclasses.dataclass(frozen=True)
class FixedClock:
    """A clock stopped at one instant: what a test clock's frozen time looks like to services."""

    instant: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "instant", require_aware(self.instant, name="FixedClock.instant"))

    def now(self) -> dt.datetime:
        return self.instant
