"""Releasing quarantined events once what they lacked exists: nothing stays silently uncounted."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from accrual.services.usage.ingest import attribute
from accrual.services.usage.intake import IncomingEvent
from accrual.store import usage as store
from accrual.store.database import Database

_ENCODER = msgspec.json.Encoder(decimal_format="number", order="sorted")
BATCH = 1000


def release_held(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID | None,
    now: dt.datetime,
    customer_refs: Sequence[str] = (),
    subscription_refs: Sequence[str] = (),
    meter_codes: Sequence[str] = (),
) -> int:
    """Count quarantined events naming these refs if what they lacked now exists; return how many."""
    rows = store.held(
        conn,
        tenant_id=tenant_id,
        customer_refs=customer_refs,
        subscription_refs=subscription_refs,
        meter_codes=meter_codes,
        limit=BATCH,
    )
    return release_rows(conn, rows, now=now)


def release_rows(conn: sa.Connection, rows: Sequence[sa.Row[Any]], *, now: dt.datetime) -> int:
    """Count the held events among `rows` that can now be attributed; the others keep their current reason.

    Released events that fall in a period already invoiced are billed as late usage.
    """
    released = 0
    for tenant, group in itertools.groupby(rows, key=lambda r: r.tenant_id):
        held = list(group)
        events = [
            IncomingEvent(
                event_id=r.event_id,
                meter=r.meter,
                subscription=r.subscription_ref,
                customer=r.customer_ref,
                ts=r.ts,
                properties=r.properties,
                properties_json=_ENCODER.encode(r.properties).decode(),
                payload_hash=b"",
            )
            for r in held
        ]
        attributions = attribute(conn, tenant, events)
        counted = [e for e in events if attributions[e.event_id].reason is None]
        store.insert_events(
            conn,
            tenant_id=tenant,
            subscription_ids=[attributions[e.event_id].subscription_id for e in counted],  # type: ignore[misc]
            meter_ids=[attributions[e.event_id].meter_id for e in counted],  # type: ignore[misc]
            instants=[e.ts for e in counted],
            buckets=attributions.buckets(counted),
            event_ids=[e.event_id for e in counted],
            properties=[e.properties_json for e in counted],
            late=[attributions[e.event_id].late for e in counted],
            now=now,
        )
        store.release(
            conn,
            tenant_id=tenant,
            event_ids=[e.event_id for e in counted],
            subscription_ids=[attributions[e.event_id].subscription_id for e in counted],  # type: ignore[misc]
            now=now,
        )
        store.requalify(
            conn,
            tenant_id=tenant,
            rows=[
                (e.event_id, str(attributions[e.event_id].reason), attributions[e.event_id].detail)
                for e in events
                if attributions[e.event_id].reason is not None
            ],
        )
        released += len(counted)
    return released


def reprocess(db: Database, *, tenant_id: uuid.UUID | None, now: dt.datetime) -> int:
    """Try every held event again (`accrual events reprocess`, and the worker now and then)."""
    total = 0
    after: tuple[uuid.UUID, dt.datetime, str] | None = None
    while True:
        with db.transaction() as conn:
            rows = store.held(conn, tenant_id=tenant_id, everything=True, after=after, limit=BATCH)
            if not rows:
                return total
            after = (rows[-1].tenant_id, rows[-1].received_at, rows[-1].event_id)
            total += release_rows(conn, rows, now=now)
