"""Reading and verifying the audit log."""

from __future__ import annotations

import dataclasses
import uuid

from accrual.domain import audit
from accrual.services.unit_of_work import read_only
from accrual.store import audit as audit_store
from accrual.store.database import TransactionSource
from accrual.store.pagination import Page, fetch_page


@dataclasses.dataclass(frozen=True)
class ChainReport:
    """The outcome of walking one tenant's chain."""

    tenant_id: uuid.UUID
    records_checked: int
    first_break: audit.ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def verify_audit_chain(db: TransactionSource, *, tenant_id: uuid.UUID | None = None) -> list[ChainReport]:
    """Walk the chain of one tenant, or of every tenant with records, and report the first break of each."""
    reports = []
    with read_only(db) as conn:
        tenant_ids = [tenant_id] if tenant_id is not None else audit_store.tenants_with_records(conn)
        for tid in tenant_ids:
            checked, first_break = audit.verify_chain(audit_store.chain(conn, tenant_id=tid))
            reports.append(ChainReport(tenant_id=tid, records_checked=checked, first_break=first_break))
    return reports


def list_audit_entries(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    entity_type: str | None,
    entity_id: str | None,
    cursor: str | None,
    limit: int,
) -> Page[audit_store.AuditEntry]:
    """The tenant's audit records, newest first, optionally for one entity."""
    query = audit_store.select_entries(tenant_id=tenant_id, entity_type=entity_type, entity_id=entity_id)
    with read_only(db) as conn:
        return fetch_page(
            conn,
            query,
            query.selected_columns.seq,
            cursor=cursor,
            limit=limit,
            descending=True,
            to_item=audit_store.entry_from_row,
            key_of=lambda e: e.seq,
            parse_key=int,
        )
