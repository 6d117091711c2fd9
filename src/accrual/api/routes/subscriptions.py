"""Customers and subscriptions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from accrual.api import lifecycle_schemas as s
from accrual.api.deps import ReadContext, WriteContext, reader, writer
from accrual.api.schemas import ListOf, list_of
from accrual.domain.access import Scope
from accrual.services import customers, subscriptions
from accrual.store.database import TransactionSource
from accrual.store.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1")

Reader = Annotated[ReadContext, Depends(reader(Scope.READ))]
Writer = Annotated[WriteContext, Depends(writer(Scope.WRITE))]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


# --- customers -----------------------------------------------------------------------------


@router.post(
    "/customers",
    status_code=201,
    response_model=s.CustomerOut,
    tags=["customers"],
    summary="Create a customer",
)
def create_customer(body: s.CustomerCreate, ctx: Writer) -> Response:
    spec = s.dump(body)
    test_clock = spec.pop("test_clock", None)
    return ctx.run(
        lambda db: s.CustomerOut.of(
            customers.create_customer(
                db,
                tenant_id=ctx.principal.tenant_id,
                spec=spec,
                test_clock_id=test_clock,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.get(
    "/customers",
    response_model=ListOf[s.CustomerOut],
    tags=["customers"],
    summary="List customers, newest first",
)
def list_customers(
    ctx: Reader, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT, test_clock: uuid.UUID | None = None
) -> ListOf[s.CustomerOut]:
    page = customers.list_customers(
        ctx.db, tenant_id=ctx.principal.tenant_id, test_clock_id=test_clock, cursor=cursor, limit=limit
    )
    return list_of(s.CustomerOut, page, s.CustomerOut.of)


@router.get(
    "/customers/external/{external_id}",
    response_model=s.CustomerOut,
    tags=["customers"],
    summary="Look a customer up by your external id",
)
def get_customer_by_external_id(external_id: str, ctx: Reader) -> s.CustomerOut:
    return s.CustomerOut.of(
        customers.get_customer(ctx.db, tenant_id=ctx.principal.tenant_id, external_id=external_id)
    )


@router.get(
    "/customers/{customer_id}", response_model=s.CustomerOut, tags=["customers"], summary="One customer"
)
def get_customer(customer_id: uuid.UUID, ctx: Reader) -> s.CustomerOut:
    return s.CustomerOut.of(
        customers.get_customer(ctx.db, tenant_id=ctx.principal.tenant_id, customer_id=customer_id)
    )


@router.patch(
    "/customers/{customer_id}", response_model=s.CustomerOut, tags=["customers"], summary="Update a customer"
)
def update_customer(customer_id: uuid.UUID, body: s.CustomerUpdate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.CustomerOut.of(
            customers.update_customer(
                db,
                tenant_id=ctx.principal.tenant_id,
                customer_id=customer_id,
                changes=s.dump(body),
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


# --- subscriptions -------------------------------------------------------------------------


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=s.SubscriptionOut,
    tags=["subscriptions"],
    summary="Subscribe a customer to a plan",
)
def create_subscription(body: s.SubscriptionCreate, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.SubscriptionOut.of(
            subscriptions.create_subscription(
                db,
                tenant_id=ctx.principal.tenant_id,
                spec=s.dump(body),
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.get(
    "/subscriptions",
    response_model=ListOf[s.SubscriptionOut],
    tags=["subscriptions"],
    summary="List subscriptions, newest first",
)
def list_subscriptions(
    ctx: Reader,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    customer_id: uuid.UUID | None = None,
    status: str | None = None,
) -> ListOf[s.SubscriptionOut]:
    page = subscriptions.list_subscriptions(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        customer_id=customer_id,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return list_of(s.SubscriptionOut, page, s.SubscriptionOut.of)


@router.get(
    "/subscriptions/external/{external_id}",
    response_model=s.SubscriptionOut,
    tags=["subscriptions"],
    summary="Look a subscription up by your external id",
)
def get_subscription_by_external_id(external_id: str, ctx: Reader) -> s.SubscriptionOut:
    return s.SubscriptionOut.of(
        subscriptions.get_subscription(ctx.db, tenant_id=ctx.principal.tenant_id, external_id=external_id)
    )


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=s.SubscriptionOut,
    tags=["subscriptions"],
    summary="One subscription",
)
def get_subscription(subscription_id: uuid.UUID, ctx: Reader) -> s.SubscriptionOut:
    return s.SubscriptionOut.of(
        subscriptions.get_subscription(
            ctx.db, tenant_id=ctx.principal.tenant_id, subscription_id=subscription_id
        )
    )


@router.get(
    "/subscriptions/{subscription_id}/timeline",
    response_model=s.Timeline,
    tags=["subscriptions"],
    summary="Every transition of the subscription, with its reason",
)
def get_timeline(subscription_id: uuid.UUID, ctx: Reader) -> s.Timeline:
    entries = subscriptions.timeline(
        ctx.db, tenant_id=ctx.principal.tenant_id, subscription_id=subscription_id
    )
    return s.Timeline(subscription=subscription_id, entries=[s.TimelineEntryOut.of(e) for e in entries])


@router.get(
    "/subscriptions/{subscription_id}/scheduled_changes",
    response_model=list[s.ScheduledChangeOut],
    tags=["subscriptions"],
    summary="Changes scheduled for later (all=true: also applied and canceled ones)",
)
def list_scheduled_changes(
    subscription_id: uuid.UUID, ctx: Reader, all: bool = False
) -> list[s.ScheduledChangeOut]:
    changes = subscriptions.list_scheduled_changes(
        ctx.db, tenant_id=ctx.principal.tenant_id, subscription_id=subscription_id, pending_only=not all
    )
    return [s.ScheduledChangeOut.of(c) for c in changes]


@router.post(
    "/subscriptions/{subscription_id}/scheduled_changes/{scheduled_change_id}/cancel",
    response_model=s.ScheduledChangeOut,
    tags=["subscriptions"],
    summary="Withdraw a scheduled change",
)
def cancel_scheduled_change(
    subscription_id: uuid.UUID, scheduled_change_id: uuid.UUID, ctx: Writer
) -> Response:
    return ctx.run(
        lambda db: s.ScheduledChangeOut.of(
            subscriptions.cancel_scheduled_change(
                db,
                tenant_id=ctx.principal.tenant_id,
                subscription_id=subscription_id,
                scheduled_change_id=scheduled_change_id,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.post(
    "/subscriptions/{subscription_id}/change",
    response_model=s.ChangeOut,
    tags=["subscriptions"],
    summary="Upgrade, downgrade, change quantity or migrate version: now, at period end, or at an instant",
)
def change_subscription(subscription_id: uuid.UUID, body: s.SubscriptionChange, ctx: Writer) -> Response:
    def handler(db: TransactionSource) -> s.ChangeOut:
        outcome = subscriptions.change_subscription(
            db,
            tenant_id=ctx.principal.tenant_id,
            subscription_id=subscription_id,
            spec=s.dump(body),
            actor=ctx.principal.actor,
            now=ctx.now,
        )
        return s.ChangeOut(
            subscription=s.SubscriptionOut.of(outcome.subscription),
            scheduled_change=s.ScheduledChangeOut.of(outcome.scheduled) if outcome.scheduled else None,
        )

    return ctx.run(handler)


def _simple(action: Any, subscription_id: uuid.UUID, ctx: WriteContext, **extra: Any) -> Response:
    return ctx.run(
        lambda db: s.SubscriptionOut.of(
            action(
                db,
                tenant_id=ctx.principal.tenant_id,
                subscription_id=subscription_id,
                actor=ctx.principal.actor,
                now=ctx.now,
                **extra,
            )
        )
    )


@router.post(
    "/subscriptions/{subscription_id}/pause",
    response_model=s.SubscriptionOut,
    tags=["subscriptions"],
    summary="Pause now: no fees until resumed",
)
def pause_subscription(subscription_id: uuid.UUID, ctx: Writer) -> Response:
    return _simple(subscriptions.pause_subscription, subscription_id, ctx)


@router.post(
    "/subscriptions/{subscription_id}/resume",
    response_model=s.SubscriptionOut,
    tags=["subscriptions"],
    summary="Resume a paused subscription now",
)
def resume_subscription(subscription_id: uuid.UUID, ctx: Writer) -> Response:
    return _simple(subscriptions.resume_subscription, subscription_id, ctx)


@router.post(
    "/subscriptions/{subscription_id}/cancel",
    response_model=s.SubscriptionOut,
    tags=["subscriptions"],
    summary="Cancel at period end (default) or immediately",
)
def cancel_subscription(subscription_id: uuid.UUID, body: s.SubscriptionCancel, ctx: Writer) -> Response:
    return _simple(subscriptions.cancel_subscription, subscription_id, ctx, timing=body.timing)


@router.post(
    "/subscriptions/{subscription_id}/uncancel",
    response_model=s.SubscriptionOut,
    tags=["subscriptions"],
    summary="Take back a cancellation at period end",
)
def uncancel_subscription(subscription_id: uuid.UUID, ctx: Writer) -> Response:
    return _simple(subscriptions.uncancel_subscription, subscription_id, ctx)


@router.patch(
    "/subscriptions/{subscription_id}",
    response_model=s.SubscriptionOut,
    tags=["subscriptions"],
    summary="Update metadata or the trial-end behavior",
)
def update_subscription(subscription_id: uuid.UUID, body: s.SubscriptionUpdate, ctx: Writer) -> Response:
    return _simple(subscriptions.update_subscription, subscription_id, ctx, changes=s.dump(body))
