"""The unit of work: one transaction that writes a change, its audit records and its events.

Every service that changes state does so inside `unit_of_work(...)`. What the service records
with `uow.record(...)` and announces with `uow.emit(...)` is written when the block ends,
in the same transaction as the change, so a change is never committed without its audit
record and its outbox event, nor the other way round. Audit records are appended last because
appending holds the tenant's chain lock until commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa

from accrual.domain.clock import require_aware
from accrual.store import audit as audit_store
from accrual.store import constraints, ids
from accrual.store import outbox as outbox_store
from accrual.store.database import TransactionSource, stored_json


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who asked for a change: an API key, a CLI user, or the system itself."""

    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def api_key(cls, api_key_id: uuid.UUID) -> Actor:
        return cls("api_key", str(api_key_id))

    @classmethod
    def cli(cls, user: str) -> Actor:
        return cls("cli", user)

    @classmethod
    def system(cls, component: str) -> Actor:
        return cls("system", component)


def _as_stored(snapshot: Mapping[str, Any] | None) -> dict[str, Any] | None:
    # Hash exactly what the database will hand back: the JSON round trip turns decimals and
    # instants into strings, as storing them does. The result keeps its text, so the outbox
    # and the audit log store (and hash) it without encoding it again.
    return None if snapshot is None else stored_json(snapshot)


class UnitOfWork:
    """A transaction in progress, with the tenant, actor and instant it acts for."""

    def __init__(self, conn: sa.Connection, *, tenant_id: uuid.UUID, actor: Actor, now: dt.datetime) -> None:
        self.conn = conn
        self.tenant_id = tenant_id
        self.actor = actor
        self.now = now
        self._audit: list[audit_store.PendingAudit] = []
        self._events: list[outbox_store.PendingEvent] = []
        # Snapshots already made storable, by identity: one is often both recorded and announced.
        self._stored: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = {}

    def _as_stored(self, snapshot: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if snapshot is None:
            return None
        known = self._stored.get(id(snapshot))
        if known is not None and known[0] is snapshot:
            return known[1]
        stored = _as_stored(snapshot)
        assert stored is not None  # noqa: S101 - a snapshot stores as a dict
        self._stored[id(snapshot)] = (snapshot, stored)
        return stored

    def record(
        self,
        action: str,
        *,
        entity_type: str,
        entity_id: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> None:
        """Add an audit record of a change made in this transaction."""
        self._audit.append(
            audit_store.PendingAudit(
                occurred_at=self.now,
                actor=str(self.actor),
                action=action,
                entity_type=entity_type,
                entity_id=entity_id,
                before=self._as_stored(before),
                after=self._as_stored(after),
            )
        )

    def emit(
        self, event_type: str, *, entity_type: str, entity_id: str, payload: Mapping[str, Any]
    ) -> uuid.UUID:
        """Announce a change to the outside world once this transaction commits; return the event id."""
        event_id = ids.new_id()
        self._events.append(
            outbox_store.PendingEvent(
                event_id=event_id,
                event_type=event_type,
                entity_type=entity_type,
                entity_id=entity_id,
                payload=self._as_stored(payload) or {},
                occurred_at=self.now,
            )
        )
        return event_id

    def changed(
        self,
        action: str,
        *,
        entity_type: str,
        entity_id: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> None:
        """Record a change and announce it as an event of the same name carrying the new state."""
        self.record(action, entity_type=entity_type, entity_id=entity_id, before=before, after=after)
        self.emit(action, entity_type=entity_type, entity_id=entity_id, payload=after or before or {})

    def flush(self) -> None:
        outbox_store.append(self.conn, tenant_id=self.tenant_id, events=self._events)
        audit_store.append(self.conn, tenant_id=self.tenant_id, entries=self._audit)
        self._events.clear()
        self._audit.clear()


@contextlib.contextmanager
def unit_of_work(
    source: TransactionSource, *, tenant_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> Iterator[UnitOfWork]:
    """Run a block in one transaction; commit it with its audit records and events, or nothing.

    Database refusals that mean something to the caller (a registered constraint, an
    append-only table) are raised as their `AccrualError`.
    """
    try:
        with source.transaction() as conn:
            uow = UnitOfWork(conn, tenant_id=tenant_id, actor=actor, now=require_aware(now, name="now"))
            yield uow
            uow.flush()
    except sa.exc.DBAPIError as exc:
        translated = constraints.translate(exc)
        if translated is None:
            raise
        raise translated from exc


@contextlib.contextmanager
def read_only(source: TransactionSource) -> Iterator[sa.Connection]:
    """A transaction for reads: one consistent snapshot per statement, nothing written."""
    with source.transaction() as conn:
        yield conn
