"""Work that falls due as a clock moves: the hook later capabilities plug into.

A provider (subscription renewals, trial ends, billing runs, ...) answers two questions for a
clock scope: when is the earliest work of mine due, up to some instant; and run my work due
at that instant. Advancing a test clock, and the worker following the real clock, ask every
registered provider in turn and run the earliest work first, so everything happens in time
order through the same services whatever the clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Protocol

import sqlalchemy as sa

from accrual.store.database import TransactionSource


@dataclasses.dataclass(frozen=True)
class ClockScope:
    """Whose time is moving: one test clock of one tenant, or the real clock (both None)."""

    tenant_id: uuid.UUID | None = None
    test_clock_id: uuid.UUID | None = None

    @classmethod
    def real(cls) -> ClockScope:
        return cls()

    @property
    def is_real(self) -> bool:
        return self.test_clock_id is None


class DueWorkProvider(Protocol):
    """One kind of work that falls due at instants."""

    name: str

    def next_due(self, conn: sa.Connection, *, scope: ClockScope, until: dt.datetime) -> dt.datetime | None:
        """The earliest instant at or before `until` at which work of this kind is pending, if any."""
        ...

    def run_due(self, db: TransactionSource, *, scope: ClockScope, at: dt.datetime) -> int:
        """Do the work pending at or before `at`, as of `at`, in transactions of its own; return how much."""
        ...


class DueWorkStuck(RuntimeError):
    """A provider said work was due but then did none of it: a bug that would loop forever."""


class DueWorkRegistry:
    """The providers, in the order their work runs when due at the same instant."""

    def __init__(self, providers: tuple[DueWorkProvider, ...] = ()) -> None:
        self._providers: list[DueWorkProvider] = list(providers)

    def register(self, provider: DueWorkProvider) -> None:
        if any(p.name == provider.name for p in self._providers):
            raise ValueError(f"a due-work provider named {provider.name!r} is already registered")
        self._providers.append(provider)

    @property
    def providers(self) -> tuple[DueWorkProvider, ...]:
        return tuple(self._providers)

    def earliest(
        self, conn: sa.Connection, *, scope: ClockScope, until: dt.datetime
    ) -> tuple[DueWorkProvider, dt.datetime] | None:
        """The provider with the earliest pending work up to `until` (ties: registration order)."""
        best: tuple[DueWorkProvider, dt.datetime] | None = None
        for provider in self._providers:
            due = provider.next_due(conn, scope=scope, until=until)
            if due is not None and due <= until and (best is None or due < best[1]):
                best = (provider, due)
        return best
