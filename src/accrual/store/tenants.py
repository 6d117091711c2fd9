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
    grace_period_days: int = 0
    payment_terms_days: int = 0
    invoice_prefix: str = "ACC-"
    credit_note_prefix: str = "CN-"
    zero_amount_invoices: str = "mark_paid"
    seller: dict[str, Any] = dataclasses.field(default_factory=dict)
    allow_insecure_webhooks: bool = False
    webhook_allowed_networks: list[str] = dataclasses.field(default_factory=list)

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
            "grace_period_days": self.grace_period_days,
            "payment_terms_days": self.payment_terms_days,
            "invoice_prefix": self.invoice_prefix,
            "credit_note_prefix": self.credit_note_prefix,
            "zero_amount_invoices": self.zero_amount_invoices,
            "seller": dict(self.seller),
            "webhooks": {
                "allow_insecure": self.allow_insecure_webhooks,
                "allowed_networks": list(self.webhook_allowed_networks),
            },
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
        grace_period_days=row.grace_period_days,
        payment_terms_days=row.payment_terms_days,
        invoice_prefix=row.invoice_prefix,
        credit_note_prefix=row.credit_note_prefix,
        zero_amount_invoices=row.zero_amount_invoices,
        seller=dict(row.seller),
        allow_insecure_webhooks=row.allow_insecure_webhooks,
        webhook_allowed_networks=list(row.webhook_allowed_networks),
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
