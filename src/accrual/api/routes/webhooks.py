"""Webhook endpoints, their deliveries, redelivery and replay; and the outbox to pull from."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from accrual.api.deps import ReadContext, WriteContext, reader, writer
from accrual.api.schemas import ListOf, list_of
from accrual.api.webhook_schemas import (
    DeliveriesMade,
    DeliveryOut,
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointUpdate,
    OutboxEventOut,
    OutboxPageOut,
    SecretOut,
    SecretRotate,
    SecretsOut,
)
from accrual.domain.access import Scope
from accrual.services import webhooks
from accrual.store.database import TransactionSource
from accrual.store.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(tags=["webhooks"])
ENDPOINTS = "/v1/webhook_endpoints"


@router.post(
    ENDPOINTS,
    status_code=201,
    response_model=EndpointCreated,
    summary="Register a URL for events; the response carries its signing secret",
)
def create_endpoint(
    body: EndpointCreate, ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))]
) -> Response:
    def handler(db: TransactionSource) -> EndpointCreated:
        created = webhooks.create_endpoint(
            db,
            tenant_id=ctx.principal.tenant_id,
            url=body.url,
            event_types=body.event_types,
            description=body.description,
            enabled=body.enabled,
            actor=ctx.principal.actor,
            now=ctx.now,
        )
        return EndpointCreated(**EndpointOut.of(created.endpoint).model_dump(), secret=created.secret)

    return ctx.run(handler, status_code=201)


@router.get(ENDPOINTS, response_model=ListOf[EndpointOut], summary="List webhook endpoints")
def list_endpoints(
    ctx: Annotated[ReadContext, Depends(reader(Scope.ADMIN))],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ListOf[EndpointOut]:
    page = webhooks.list_endpoints(ctx.db, tenant_id=ctx.principal.tenant_id, cursor=cursor, limit=limit)
    return list_of(EndpointOut, page, EndpointOut.of)


@router.get(ENDPOINTS + "/{endpoint_id}", response_model=EndpointOut, summary="One webhook endpoint")
def get_endpoint(
    endpoint_id: uuid.UUID, ctx: Annotated[ReadContext, Depends(reader(Scope.ADMIN))]
) -> EndpointOut:
    return EndpointOut.of(
        webhooks.get_endpoint(ctx.db, tenant_id=ctx.principal.tenant_id, endpoint_id=endpoint_id)
    )


@router.patch(
    ENDPOINTS + "/{endpoint_id}",
    response_model=EndpointOut,
    summary="Change the URL, event types or description; disable or enable",
)
def update_endpoint(
    endpoint_id: uuid.UUID, body: EndpointUpdate, ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))]
) -> Response:
    def handler(db: TransactionSource) -> EndpointOut:
        tenant_id, actor = ctx.principal.tenant_id, ctx.principal.actor
        endpoint = webhooks.update_endpoint(
            db,
            tenant_id=tenant_id,
            endpoint_id=endpoint_id,
            url=body.url,
            event_types=body.event_types,
            description=body.description,
            actor=actor,
            now=ctx.now,
        )
        if body.enabled is not None:
            endpoint = webhooks.set_enabled(
                db,
                tenant_id=tenant_id,
                endpoint_id=endpoint_id,
                enabled=body.enabled,
                actor=actor,
                now=ctx.now,
            )
        return EndpointOut.of(endpoint)

    return ctx.run(handler)


def _set_enabled(endpoint_id: uuid.UUID, ctx: WriteContext, *, enabled: bool) -> Response:
    return ctx.run(
        lambda db: EndpointOut.of(
            webhooks.set_enabled(
                db,
                tenant_id=ctx.principal.tenant_id,
                endpoint_id=endpoint_id,
                enabled=enabled,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.post(
    ENDPOINTS + "/{endpoint_id}/disable", response_model=EndpointOut, summary="Stop deliveries (they wait)"
)
def disable_endpoint(
    endpoint_id: uuid.UUID, ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))]
) -> Response:
    return _set_enabled(endpoint_id, ctx, enabled=False)


@router.post(
    ENDPOINTS + "/{endpoint_id}/enable",
    response_model=EndpointOut,
    summary="Resume deliveries, forgetting the failure streak",
)
def enable_endpoint(
    endpoint_id: uuid.UUID, ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))]
) -> Response:
    return _set_enabled(endpoint_id, ctx, enabled=True)


@router.get(
    ENDPOINTS + "/{endpoint_id}/secret",
    response_model=SecretsOut,
    summary="The secrets signing deliveries now",
)
def get_secrets(
    endpoint_id: uuid.UUID, ctx: Annotated[ReadContext, Depends(reader(Scope.ADMIN))]
) -> SecretsOut:
    found = webhooks.signing_secrets(
        ctx.db, tenant_id=ctx.principal.tenant_id, endpoint_id=endpoint_id, now=ctx.now
    )
    return SecretsOut(
        data=[SecretOut(secret=s.secret, created_at=s.created_at, expires_at=s.expires_at) for s in found]
    )


@router.post(
    ENDPOINTS + "/{endpoint_id}/secret/rotate",
    response_model=SecretOut,
    summary="New secret; the old one keeps signing during the overlap",
)
def rotate_secret(
    endpoint_id: uuid.UUID, body: SecretRotate, ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))]
) -> Response:
    def handler(db: TransactionSource) -> SecretOut:
        secret = webhooks.rotate_secret(
            db,
            tenant_id=ctx.principal.tenant_id,
            endpoint_id=endpoint_id,
            overlap=dt.timedelta(seconds=body.overlap_seconds),
            actor=ctx.principal.actor,
            now=ctx.now,
        )
        return SecretOut(secret=secret, created_at=ctx.now, expires_at=None)

    return ctx.run(handler)


@router.get(
    ENDPOINTS + "/{endpoint_id}/deliveries",
    response_model=ListOf[DeliveryOut],
    summary="Deliveries to the endpoint, newest first, with every attempt",
)
def list_deliveries(
    endpoint_id: uuid.UUID,
    ctx: Annotated[ReadContext, Depends(reader(Scope.ADMIN))],
    status: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> ListOf[DeliveryOut]:
    page = webhooks.list_deliveries(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        endpoint_id=endpoint_id,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return list_of(DeliveryOut, page, DeliveryOut.of)


@router.post(
    ENDPOINTS + "/{endpoint_id}/replay",
    status_code=202,
    response_model=DeliveriesMade,
    summary="Send again every event the endpoint takes that occurred since (until) an instant",
)
def replay(
    endpoint_id: uuid.UUID,
    since: dt.datetime,
    ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))],
    until: dt.datetime | None = None,
) -> Response:
    return ctx.run(
        lambda db: DeliveriesMade(
            deliveries=webhooks.replay(
                db,
                tenant_id=ctx.principal.tenant_id,
                endpoint_id=endpoint_id,
                since=since,
                until=until,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=202,
    )


@router.post(
    "/v1/events_outbox/{event_id}/redeliver",
    status_code=202,
    response_model=DeliveriesMade,
    summary="Send an event again, with its original webhook-id",
)
def redeliver(
    event_id: uuid.UUID,
    ctx: Annotated[WriteContext, Depends(writer(Scope.ADMIN))],
    endpoint_id: Annotated[
        uuid.UUID | None, Query(description="Only to this endpoint; none: every enabled one that takes it.")
    ] = None,
) -> Response:
    return ctx.run(
        lambda db: DeliveriesMade(
            deliveries=webhooks.redeliver(
                db,
                tenant_id=ctx.principal.tenant_id,
                event_id=event_id,
                endpoint_id=endpoint_id,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=202,
    )


@router.get(
    "/v1/outbox",
    response_model=OutboxPageOut,
    summary="Pull events in a stable order that never skips one (keep the cursor)",
)
def pull_outbox(
    ctx: Annotated[ReadContext, Depends(reader(Scope.READ))],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    event_type: Annotated[list[str] | None, Query(description="Only these types (repeatable).")] = None,
) -> OutboxPageOut:
    page = webhooks.pull(
        ctx.db, tenant_id=ctx.principal.tenant_id, cursor=cursor, limit=limit, event_types=event_type or ()
    )
    return OutboxPageOut(
        data=[
            OutboxEventOut(
                id=e.event_id,
                type=e.event_type,
                entity_type=e.entity_type,
                entity_id=e.entity_id,
                timestamp=e.occurred_at,
                data=e.payload,
            )
            for e in page.events
        ],
        next_cursor=page.next_cursor,
    )
