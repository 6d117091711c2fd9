"""The audit log: appended under a per-tenant lock so each tenant's hash chain stays linear."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrual.domain import audit
from accrual.store.database import StoredJson, insert_rows
from accrual.store.schema import audit_log

# First key of the two-int advisory lock that serializes appends to one tenant's chain.
_AUDIT_LOCK_NAMESPACE = 0x41_55_44  # "AUD"


@dataclasses.dataclass(frozen=True)
class PendingAudit:
    """An audit record before it has its place in the chain."""

    occurred_at: dt.datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


def append(conn: sa.Connection, *, tenant_id: uuid.UUID, entries: Sequence[PendingAudit]) -> list[int]:
    """Append `entries` to the tenant's chain in order; return their sequence numbers.

    The lock is held until the transaction ends, so callers append as late as they can.
    """
    if not entries:
        return []
    conn.execute(
        sa.select(sa.func.pg_advisory_xact_lock(_AUDIT_LOCK_NAMESPACE, sa.func.hashtext(str(tenant_id))))
    )
    last = conn.execute(
        sa.select(audit_log.c.seq, audit_log.c.hash)
        .where(audit_log.c.tenant_id == tenant_id)
        .order_by(audit_log.c.seq.desc())
        .limit(1)
    ).first()
    seq, prev_hash = (last.seq, last.hash) if last is not None else (0, audit.GENESIS_HASH)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        seq += 1
        record = audit.AuditRecord(
            tenant_id=str(tenant_id),
            seq=seq,
            occurred_at=entry.occurred_at,
            actor=entry.actor,
            action=entry.action,
            entity_type=entry.entity_type,
            entity_id=entry.entity_id,
            before=entry.before,
            after=entry.after,
        )
        digest = audit.chain_hash(prev_hash, record, canonical=_canonical(record))
        rows.append(
            {
                "tenant_id": tenant_id,
                "seq": seq,
                "occurred_at": entry.occurred_at,
                "actor": entry.actor,
                "action": entry.action,
                "entity_type": entry.entity_type,
                "entity_id": entry.entity_id,
                "before": entry.before,
                "after": entry.after,
                "prev_hash": prev_hash,
                "hash": digest,
            }
        )
        prev_hash = digest
    insert_rows(conn, audit_log, rows)
    return [row["seq"] for row in rows]


def _canonical(record: audit.AuditRecord) -> bytes | None:
    """The record's canonical bytes from its states' stored text, when both have one."""
    texts = []
    for state in (record.before, record.after):
        if state is not None and type(state) is not StoredJson:
            return None
        texts.append(None if state is None else state.text)
    return record.canonical_with(before=texts[0], after=texts[1])


def _record(row: sa.Row[Any]) -> audit.AuditRecord:
    return audit.AuditRecord(
        tenant_id=str(row.tenant_id),
        seq=row.seq,
        occurred_at=row.occurred_at,
        actor=row.actor,
        action=row.action,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        before=row.before,
        after=row.after,
    )


def chain(conn: sa.Connection, *, tenant_id: uuid.UUID) -> Iterator[tuple[audit.AuditRecord, bytes, bytes]]:
    """Every record of the tenant's chain in order, with its stored hashes, streamed."""
    result = conn.execution_options(yield_per=2000).execute(
        sa.select(audit_log).where(audit_log.c.tenant_id == tenant_id).order_by(audit_log.c.seq)
    )
    for row in result:
        yield _record(row), row.prev_hash, row.hash


def tenants_with_records(conn: sa.Connection) -> list[uuid.UUID]:
    return list(conn.execute(sa.select(audit_log.c.tenant_id).distinct()).scalars())


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    seq: int
    occurred_at: dt.datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    hash: bytes


def entry_from_row(row: sa.Row[Any]) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        occurred_at=row.occurred_at,
        actor=row.actor,
        action=row.action,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        before=row.before,
        after=row.after,
        hash=row.hash,
    )


def select_entries(*, tenant_id: uuid.UUID, entity_type: str | None, entity_id: str | None) -> sa.Select[Any]:
    query = sa.select(audit_log).where(audit_log.c.tenant_id == tenant_id)
    if entity_type is not None:
        query = query.where(audit_log.c.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(audit_log.c.entity_id == entity_id)
    return query
