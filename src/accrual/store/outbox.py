"""The transactional outbox: events written in the same transaction as the change they announce."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrual.store.database import insert_rows
from accrual.store.schema import outbox_events


@dataclasses.dataclass(frozen=True)
class PendingEvent:
    event_id: uuid.UUID
    event_type: str
    entity_type: str
    entity_id: str
    payload: Mapping[str, Any]
    occurred_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class OutboxEvent:
    event_id: uuid.UUID
    seq: int
    event_type: str
    entity_type: str
    entity_id: str
    payload: Mapping[str, Any]
    occurred_at: dt.datetime


def append(conn: sa.Connection, *, tenant_id: uuid.UUID, events: Sequence[PendingEvent]) -> None:
    if not events:
        return
    insert_rows(
        conn,
        outbox_events,
        [
            {
                "tenant_id": tenant_id,
                "event_id": e.event_id,
                "event_type": e.event_type,
                "entity_type": e.entity_type,
                "entity_id": e.entity_id,
                "payload": e.payload,
                "occurred_at": e.occurred_at,
            }
            for e in events
        ],
    )


def event_from_row(row: sa.Row[Any]) -> OutboxEvent:
    return OutboxEvent(
        event_id=row.event_id,
        seq=row.seq,
        event_type=row.event_type,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        payload=row.payload,
        occurred_at=row.occurred_at,
    )


def select_events(*, tenant_id: uuid.UUID) -> sa.Select[Any]:
    return sa.select(outbox_events).where(outbox_events.c.tenant_id == tenant_id)
