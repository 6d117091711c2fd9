"""API keys: stored as SHA-256 hashes of their secret; the secret itself is never stored."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

from accrual.store.schema import api_keys, tenants


@dataclasses.dataclass(frozen=True)
class ApiKey:
    tenant_id: uuid.UUID
    api_key_id: uuid.UUID
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None

    def snapshot(self) -> dict[str, Any]:
        """The key as the audit log and events record it (never its secret or hash)."""
        return {
            "api_key_id": str(self.api_key_id),
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def key_from_row(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(
        tenant_id=row.tenant_id,
        api_key_id=row.api_key_id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
    )


def insert(conn: sa.Connection, key: ApiKey, *, key_hash: bytes) -> None:
    values = dataclasses.asdict(key) | {"key_hash": key_hash, "scopes": list(key.scopes)}
    conn.execute(sa.insert(api_keys).values(values))


def get(
    conn: sa.Connection, *, tenant_id: uuid.UUID, api_key_id: uuid.UUID, for_update: bool = False
) -> ApiKey | None:
    query = sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id, api_keys.c.api_key_id == api_key_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return key_from_row(row) if row is not None else None


def find_active_by_hash(conn: sa.Connection, key_hash: bytes) -> ApiKey | None:
    """The unrevoked key with this hash, whatever its tenant."""
    row = conn.execute(
        sa.select(api_keys)
        .join(tenants, tenants.c.tenant_id == api_keys.c.tenant_id)
        .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    ).first()
    return key_from_row(row) if row is not None else None


def revoke(conn: sa.Connection, *, tenant_id: uuid.UUID, api_key_id: uuid.UUID, at: dt.datetime) -> ApiKey:
    row = conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.tenant_id == tenant_id, api_keys.c.api_key_id == api_key_id)
        .values(revoked_at=at)
        .returning(api_keys)
    ).one()
    return key_from_row(row)


def select_for_tenant(tenant_id: uuid.UUID, *, include_revoked: bool) -> sa.Select[Any]:
    query = sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    return query
