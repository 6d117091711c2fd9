"""The tenant's audit log and its verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from accrual.api.deps import ReadContext, reader
from accrual.api.schemas import AuditEntryOut, AuditVerification, ListOf, list_of
from accrual.domain.access import Scope
from accrual.services import audit
from accrual.store.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1/audit_log", tags=["audit"])


@router.get("", response_model=ListOf[AuditEntryOut], summary="Audit records, newest first")
def list_audit_entries(
    ctx: Annotated[ReadContext, Depends(reader(Scope.ADMIN, Scope.FINANCE))],
    entity_type: str | None = None,
    entity_id: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ListOf[AuditEntryOut]:
    page = audit.list_audit_entries(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        entity_type=entity_type,
        entity_id=entity_id,
        cursor=cursor,
        limit=limit,
    )
    return list_of(AuditEntryOut, page, AuditEntryOut.of)


@router.get(
    "/verification", response_model=AuditVerification, summary="Walk the hash chain; name the first break"
)
def verify_audit_log(
    ctx: Annotated[ReadContext, Depends(reader(Scope.ADMIN, Scope.FINANCE))],
) -> AuditVerification:
    (report,) = audit.verify_audit_chain(ctx.db, tenant_id=ctx.principal.tenant_id)
    return AuditVerification(
        intact=report.intact,
        records_checked=report.records_checked,
        first_broken_seq=report.first_break.seq if report.first_break else None,
        reason=report.first_break.reason if report.first_break else None,
    )
