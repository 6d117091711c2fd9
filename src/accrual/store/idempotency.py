"""Stored responses of idempotent requests, keyed by (tenant, Idempotency-Key)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from typing import Any

import sqlalchemy as sa

from accrual.store.schema import idempotency_keys

# First key of the advisory lock a request holds on its idempotency key while it runs.
_IDEMPOTENCY_LOCK_NAMESPACE = 0x49_44_45_4D  # "IDEM"


@dataclasses.dataclass(frozen=True)
class StoredResponse:
    request_method: str
    request_path: str
    request_hash: bytes
    status: int
    headers: dict[str, str]
    body: bytes


def try_lock(conn: sa.Connection, *, tenant_id: uuid.UUID, key: str) -> bool:
    """Take the transaction-scoped lock on this key, or return False at once if another request holds it."""
    digest = hashlib.sha256(f"{tenant_id}:{key}".encode()).digest()
    lock_key = int.from_bytes(digest[:4], "big", signed=True)
    return bool(
        conn.execute(
            sa.select(sa.func.pg_try_advisory_xact_lock(_IDEMPOTENCY_LOCK_NAMESPACE, lock_key))
        ).scalar_one()
    )


def get(conn: sa.Connection, *, tenant_id: uuid.UUID, key: str) -> StoredResponse | None:
    row = conn.execute(
        sa.select(idempotency_keys).where(
            idempotency_keys.c.tenant_id == tenant_id, idempotency_keys.c.idempotency_key == key
        )
    ).first()
    if row is None:
        return None
    return StoredResponse(
        request_method=row.request_method,
        request_path=row.request_path,
        request_hash=row.request_hash,
        status=row.response_status,
        headers=dict(row.response_headers),
        body=row.response_body,
    )


def save(
    conn: sa.Connection, *, tenant_id: uuid.UUID, key: str, response: StoredResponse, at: dt.datetime
) -> None:
    conn.execute(
        sa.insert(idempotency_keys).values(
            tenant_id=tenant_id,
            idempotency_key=key,
            request_method=response.request_method,
            request_path=response.request_path,
            request_hash=response.request_hash,
            response_status=response.status,
            response_headers=response.headers,
            response_body=response.body,
            created_at=at,
        )
    )


def delete_older_than(conn: sa.Connection, cutoff: dt.datetime, *, batch: int = 5000) -> int:
    """Forget stored responses created before `cutoff`, a batch at a time; return how many."""
    doomed = (
        sa.select(idempotency_keys.c.tenant_id, idempotency_keys.c.idempotency_key)
        .where(idempotency_keys.c.created_at < cutoff)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).cte("doomed")
    result = conn.execute(
        sa.delete(idempotency_keys).where(
            sa.tuple_(idempotency_keys.c.tenant_id, idempotency_keys.c.idempotency_key).in_(
                sa.select(doomed.c.tenant_id, doomed.c.idempotency_key)
            )
        )
    )
    count: Any = result.rowcount
    return int(count)
