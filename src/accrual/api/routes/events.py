"""Usage events: intake (JSON and CloudEvents), listing, quarantine, current usage."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from accrual.api.deps import ReadContext, WriteContext, reader, writer
from accrual.domain import money
from accrual.domain.access import Scope
from accrual.domain.errors import InvalidInput
from accrual.services import customers, subscriptions
from accrual.services.usage import ingest, intake, reads
from accrual.store.database import TransactionSource
from accrual.store.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", tags=["usage"])

Ingester = Annotated[WriteContext, Depends(writer(Scope.INGEST))]
Reader = Annotated[ReadContext, Depends(reader(Scope.READ))]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]

CLOUDEVENT = "application/cloudevents+json"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
_JSON = msgspec.json.Encoder(decimal_format="number")

EVENT_EXAMPLE: dict[str, Any] = {
    "id": "evt_9f2c1",
    "subscription": "sub_1",
    "meter": "api_calls",
    "timestamp": "2026-01-09T12:00:00Z",
    "properties": {"endpoint": "/search", "region": "eu"},
}


class EventIn(BaseModel):
    """One usage event (the body may also be a JSON array of them, up to 10,000 or 5 MB)."""

    model_config = ConfigDict(json_schema_extra={"examples": [EVENT_EXAMPLE]})
    id: str = Field(description="Your idempotency key: unique per tenant, for ever.")
    meter: str = Field(description="The meter's code.")
    subscription: str | None = Field(default=None, description="The subscription's external id (or our id).")
    customer: str | None = Field(
        default=None, description="The customer's external id, if not the subscription."
    )
    timestamp: str | None = Field(default=None, description="RFC 3339; default the arrival time.")
    properties: dict[str, Any] = Field(default_factory=dict)


EVENT_SCHEMA = EventIn.model_json_schema()


class EventResult(BaseModel):
    id: str
    status: Literal["accepted", "duplicate", "rejected"]
    quarantined: str | None = Field(default=None, description="Why an accepted event is held in quarantine.")
    late: bool | None = Field(
        default=None, description="Its period was already invoiced: billed on the next one."
    )
    error: str | None = None


class BatchResult(BaseModel):
    object: Literal["event_batch"] = "event_batch"
    accepted: int
    duplicates: int
    rejected: int
    quarantined: int
    results: list[EventResult]


def _body_kind(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


@router.post(
    "/events",
    response_model=BatchResult | EventResult,
    summary="Send usage: one event or a batch, JSON or CloudEvents; durable before the answer",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/EventIn"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"}},
                        ]
                    },
                    "example": [EVENT_EXAMPLE],
                },
                CLOUDEVENT: {
                    "schema": {"type": "object"},
                    "example": {
                        "specversion": "1.0",
                        "id": "evt_9f2c1",
                        "source": "api-gateway",
                        "type": "api_calls",
                        "subject": "acme",
                        "time": "2026-01-09T12:00:00Z",
                        "data": {"endpoint": "/search"},
                    },
                },
                CLOUDEVENTS_BATCH: {"schema": {"type": "array", "items": {"type": "object"}}},
            },
            "required": True,
        }
    },
)
def send_events(request: Request, ctx: Ingester) -> Response:
    kind = _body_kind(request)
    if kind == CLOUDEVENT:
        events, batch = intake.parse_cloudevents(ctx.body, now=ctx.now, batch=False), False
    elif kind == CLOUDEVENTS_BATCH:
        events, batch = intake.parse_cloudevents(ctx.body, now=ctx.now, batch=True), True
    else:
        events, batch = intake.parse_json(ctx.body, now=ctx.now)

    def handler(source: TransactionSource) -> bytes:
        # Ingestion manages its own transaction (and creates partitions outside it), so it is
        # always given the database; event ids make it idempotent on their own.
        del source
        results = ingest.ingest(ctx.db, tenant_id=ctx.principal.tenant_id, events=events, now=ctx.now)
        return _answer(results, batch=batch)

    return ctx.run(handler, atomic=False)


def _answer(results: list[ingest.Result], *, batch: bool) -> bytes:
    if not batch:
        return _JSON.encode(results[0])
    counts = dict.fromkeys(ingest.Outcome, 0)
    quarantined = 0
    for result in results:
        counts[result.outcome] += 1
        quarantined += result.quarantined is not None
    return _JSON.encode(
        {
            "object": "event_batch",
            "accepted": counts[ingest.Outcome.ACCEPTED],
            "duplicates": counts[ingest.Outcome.DUPLICATE],
            "rejected": counts[ingest.Outcome.REJECTED],
            "quarantined": quarantined,
            "results": results,
        }
    )


def _cursor(value: str | None) -> tuple[dt.datetime, str] | None:
    if value is None:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        return dt.datetime.fromisoformat(raw[0]), str(raw[1])
    except (ValueError, TypeError, IndexError, KeyError):
        raise InvalidInput("cursor is not one this API returned", field="cursor") from None


def _next(cursor: tuple[dt.datetime, str] | None) -> str | None:
    if cursor is None:
        return None
    raw = json.dumps([cursor[0].isoformat(), cursor[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class StoredEventOut(BaseModel):
    object: Literal["event"] = "event"
    id: str
    subscription: uuid.UUID
    meter: str
    timestamp: dt.datetime
    properties: dict[str, Any]
    received_at: dt.datetime
    late: bool


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[StoredEventOut]
    has_more: bool
    next_cursor: str | None


@router.get("/events", response_model=EventList, summary="Counted events, newest first")
def list_events(
    ctx: Reader,
    *,
    subscription: Annotated[str | None, Query(description="Id or external id.")] = None,
    customer: Annotated[str | None, Query(description="External id.")] = None,
    meter: str | None = None,
    start: Annotated[dt.datetime | None, Query(alias="from")] = None,
    end: Annotated[dt.datetime | None, Query(alias="to")] = None,
    status: Annotated[
        Literal["on_time", "late"] | None,
        Query(description="`late`: arrived after their period was invoiced (billed on the next invoice)."),
    ] = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Response:
    tenant_id = ctx.principal.tenant_id
    subscription_id = _subscription_id(ctx, subscription) if subscription else None
    customer_id = None
    if customer is not None:
        customer_id = customers.get_customer(ctx.db, tenant_id=tenant_id, external_id=customer).customer_id
    items, more = reads.list_events(
        ctx.db,
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        customer_id=customer_id,
        meter=meter,
        start=start,
        end=end,
        cursor=_cursor(cursor),
        limit=limit,
        late=None if status is None else status == "late",
    )
    body = EventList(
        data=[
            StoredEventOut(
                id=e.event_id,
                subscription=e.subscription_id,
                meter=e.meter,
                timestamp=e.ts,
                properties=e.properties,
                received_at=e.received_at,
                late=e.late,
            )
            for e in items
        ],
        has_more=more is not None,
        next_cursor=_next(more),
    )
    return Response(body.model_dump_json(), media_type="application/json")


class HeldEventOut(BaseModel):
    object: Literal["quarantined_event"] = "quarantined_event"
    id: str
    meter: str
    subscription: str | None
    customer: str | None
    timestamp: dt.datetime
    properties: dict[str, Any]
    reason: str
    detail: str
    received_at: dt.datetime
    released_at: dt.datetime | None
    released_to: uuid.UUID | None


class HeldList(BaseModel):
    object: Literal["list"] = "list"
    data: list[HeldEventOut]
    has_more: bool
    next_cursor: str | None


@router.get(
    "/events/quarantine", response_model=HeldList, summary="Events held in quarantine, with their reason"
)
def list_quarantine(
    ctx: Reader,
    reason: str | None = None,
    include_released: bool = False,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Response:
    items, more = reads.list_quarantine(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        include_released=include_released,
        reason=reason,
        cursor=_cursor(cursor),
        limit=limit,
    )
    body = HeldList(
        data=[
            HeldEventOut(
                id=e.event_id,
                meter=e.meter,
                subscription=e.subscription_ref,
                customer=e.customer_ref,
                timestamp=e.ts,
                properties=e.properties,
                reason=e.reason,
                detail=e.detail,
                received_at=e.received_at,
                released_at=e.released_at,
                released_to=e.released_to,
            )
            for e in items
        ],
        has_more=more is not None,
        next_cursor=_next(more),
    )
    return Response(body.model_dump_json(), media_type="application/json")


def _subscription_id(ctx: ReadContext, ref: str) -> uuid.UUID:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return subscriptions.get_subscription(
            ctx.db, tenant_id=ctx.principal.tenant_id, external_id=ref
        ).subscription_id


class ChargeUsageOut(BaseModel):
    charge: str
    meter: str
    group: str = Field(description="The group's values, as JSON ([] when the meter has no group-by).")
    quantity: str
    amount: str
    unit_amount: str | None
    description: str


class PeriodOut(BaseModel):
    start: dt.datetime
    end: dt.datetime


class CurrentUsageOut(BaseModel):
    object: Literal["current_usage"] = "current_usage"
    subscription: uuid.UUID
    currency: str
    period: PeriodOut | None
    since: dt.datetime | None = Field(description="Where the usage not yet billed begins.")
    as_of: dt.datetime
    amount: str
    charges: list[ChargeUsageOut]


@router.get(
    "/subscriptions/{subscription_id}/usage",
    response_model=CurrentUsageOut,
    tags=["subscriptions"],
    summary="Usage of the current period so far: quantity and amount per charge",
)
def current_usage(subscription_id: str, ctx: Reader) -> CurrentUsageOut:
    sid = _subscription_id(ctx, subscription_id)
    now = ctx.services.clock.now()
    found = reads.current_usage(ctx.db, tenant_id=ctx.principal.tenant_id, subscription_id=sid, now=now)
    currency = money.currency(found.currency)
    return CurrentUsageOut(
        subscription=sid,
        currency=found.currency,
        period=PeriodOut(start=found.period.start, end=found.period.end) if found.period else None,
        since=found.window.start if found.window else None,
        as_of=found.as_of,
        amount=money.Money.from_decimal(found.amount, currency).format(),
        charges=[
            ChargeUsageOut(
                charge=c.charge,
                meter=c.meter,
                group=c.group,
                quantity=money.format_quantity(c.quantity),
                amount=money.Money.from_decimal(c.amount, currency).format(),
                unit_amount=str(c.unit_amount) if c.unit_amount is not None else None,
                description=c.description,
            )
            for c in found.charges
        ],
    )
