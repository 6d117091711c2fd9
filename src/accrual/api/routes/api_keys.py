"""API keys of the caller's tenant (admin scope)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from accrual.api.deps import ReadContext, WriteContext, reader, writer
from accrual.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ListOf, list_of
from accrual.domain.access import Scope
from accrual.services import api_keys
from accrual.store.database import TransactionSource
from accrual.store.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1/api_keys", tags=["api keys"])


@router.post(
    "",
    status_code=201,
    response_model=ApiKeyCreated,
    summary="Create an API key; its secret is in this response only",
)
def create_api_key(
    body: ApiKeyCreate, ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))]
) -> Response:
    def handler(db: TransactionSource) -> ApiKeyCreated:
        issued = api_keys.create_api_key(
            db,
            tenant_id=ctx.principal.tenant_id,
            name=body.name,
            scopes=body.scopes,
            actor=ctx.principal.actor,
            now=ctx.now,
        )
        return ApiKeyCreated(**ApiKeyOut.of(issued.key).model_dump(), secret=issued.secret)

    return ctx.run(handler, status_code=201)


@router.get("", response_model=ListOf[ApiKeyOut], summary="List API keys, newest first")
def list_api_keys(
    ctx: Annotated[ReadContext, Depends(reader(Scope.ADMIN))],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    include_revoked: bool = False,
) -> ListOf[ApiKeyOut]:
    page = api_keys.list_api_keys(
        ctx.db, tenant_id=ctx.principal.tenant_id, include_revoked=include_revoked, cursor=cursor, limit=limit
    )
    return list_of(ApiKeyOut, page, ApiKeyOut.of)


@router.get("/{api_key_id}", response_model=ApiKeyOut, summary="One API key")
def get_api_key(
    api_key_id: uuid.UUID, ctx: Annotated[ReadContext, Depends(reader(Scope.ADMIN))]
) -> ApiKeyOut:
    return ApiKeyOut.of(
        api_keys.get_api_key(ctx.db, tenant_id=ctx.principal.tenant_id, api_key_id=api_key_id)
    )


@router.post("/{api_key_id}/revoke", response_model=ApiKeyOut, summary="Revoke an API key at once")
def revoke_api_key(
    api_key_id: uuid.UUID, ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))]
) -> Response:
    return ctx.run(
        lambda db: ApiKeyOut.of(
            api_keys.revoke_api_key(
                db,
                tenant_id=ctx.principal.tenant_id,
                api_key_id=api_key_id,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )
