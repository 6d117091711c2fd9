"""Tenants: the isolation boundary of every query."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

from accrual.store.schema import tenants


@dataclasses.dataclass(frozen=True)
class Tenant:
    tenant_id: uuid.UUID
    name: str
    timezone: str
    created_at: dt.datetime
    maker_checker: bool = False
    proration: str = "day"
    late_events: str = "bill_next"

    def snapshot(self) -> dict[str, Any]:
        """The tenant as the audit log and events record it."""
        return {
            "tenant_id": str(self.tenant_id),
            "name": self.name,
            "timezone": self.timezone,
            "created_at": self.created_at.isoformat(),
            "maker_checker": self.maker_checker,
            "proration": self.proration,
            "late_events": self.late_events,
        }


def tenant_from_row(row: sa.Row[Any]) -> Tenant:
    return Tenant(
        tenant_id=row.tenant_id,
        name=row.name,
        timezone=row.timezone,
        created_at=row.created_at,
        maker_checker=row.maker_checker,
        proration=row.proration,
        late_events=row.late_events,
    )


def insert(conn: sa.Connection, tenant: Tenant) -> None:
    conn.execute(sa.insert(tenants).values(dataclasses.asdict(tenant)))


def get(conn: sa.Connection, tenant_id: uuid.UUID, *, for_update: bool = False) -> Tenant | None:
    query = sa.select(tenants).where(tenants.c.tenant_id == tenant_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return tenant_from_row(row) if row is not None else None


def update(conn: sa.Connection, tenant_id: uuid.UUID, **values: Any) -> Tenant:
    row = conn.execute(
        sa.update(tenants).where(tenants.c.tenant_id == tenant_id).values(**values).returning(tenants)
    ).one()
    return tenant_from_row(row)


def count(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(tenants)).scalar_one()


def select_all() -> sa.Select[Any]:
    return sa.select(tenants)
