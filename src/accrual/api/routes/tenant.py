"""The caller's own tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from accrual.api.deps import ReadContext, WriteContext, reader, writer
from accrual.api.schemas import TenantOut, TenantUpdate
from accrual.domain.access import Scope
from accrual.services import tenants

router = APIRouter(prefix="/v1/tenant", tags=["tenant"])


@router.get("", response_model=TenantOut, summary="The tenant of the calling API key")
def get_tenant(ctx: Annotated[ReadContext, Depends(reader(Scope.READ))]) -> TenantOut:
    return TenantOut.of(tenants.get_tenant(ctx.db, tenant_id=ctx.principal.tenant_id))


@router.patch("", response_model=TenantOut, summary="Change the tenant's name or default time zone")
def update_tenant(body: TenantUpdate, ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))]) -> Response:
    return ctx.run(
        lambda db: TenantOut.of(
            tenants.update_tenant(
                db,
                tenant_id=ctx.principal.tenant_id,
                name=body.name,
                timezone=body.timezone,
                maker_checker=body.maker_checker,
                proration=body.proration,
                late_events=body.late_events,
                billing=body.billing.model_dump(exclude_none=True) if body.billing else None,
                webhooks=body.webhooks.model_dump(exclude_none=True) if body.webhooks else None,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )
