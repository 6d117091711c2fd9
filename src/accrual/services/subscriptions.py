"""Subscriptions: create, change, pause, resume, cancel; and the due work that moves them in time.

Each operation locks the subscription row, runs one step of the domain's state machine
(`domain.subscriptions`) and persists its outcome in the same transaction: the new state, a
history row per transition, the billing point if money is due, an audit record and outbox
events. A customer on a test clock lives at that clock's time: operations on it happen at
the clock's frozen time, and only advancing the clock moves it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrual.domain import codes, money, plans, subscriptions
from accrual.domain.clock import require_aware
from accrual.domain.errors import AccrualError, Conflict, InvalidInput, NotFound
from accrual.domain.periods import Period, ProrationUnit
from accrual.domain.subscriptions import Action, BillingMode, ChangeTiming, State, Status, Step, VersionTerms
from accrual.services.catalog.common import CouponView
from accrual.services.due_work import ClockScope
from accrual.services.unit_of_work import Actor, UnitOfWork, read_only, unit_of_work
from accrual.services.usage import quarantine
from accrual.store import catalog as catalog_store
from accrual.store import customers as customer_store
from accrual.store import ids
from accrual.store import subscriptions as store
from accrual.store import tenants as tenant_store
from accrual.store import test_clocks as clock_store
from accrual.store.cache import FactCache
from accrual.store.database import TransactionSource, insert_rows
from accrual.store.pagination import Page, fetch_page
from accrual.store.schema import billing_points as billing_points_table
from accrual.store.schema import subscription_history as subscription_history_table
from accrual.store.schema import subscriptions as subscriptions_table

_CREATE_FIELDS = (
    "external_id",
    "customer",
    "customer_id",
    "plan",
    "plan_version",
    "quantity",
    "billing",
    "start",
    "trial_days",
    "anchor",
    "coupon",
    "metadata",
    "trial_end_behavior",
)
_CHANGE_FIELDS = ("plan", "plan_version", "quantity", "timing", "at")
DUE_BATCH = 1000
RENEWAL_BATCH = 200


class SubscriptionNotFound(NotFound):
    title = "Subscription not found"


class SubscriptionBusy(Conflict):
    title = "Subscription is being changed by another request"


class InvalidChange(InvalidInput):
    title = "Invalid change"


class CouponNotRedeemable(InvalidInput):
    title = "Coupon cannot be redeemed"


# --- views ---------------------------------------------------------------------------------


def _stamp(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


@dataclasses.dataclass(frozen=True)
class SubscriptionView:
    """A subscription as callers see it: ids, plan, status, the current period."""

    subscription_id: uuid.UUID
    external_id: str | None
    customer_id: uuid.UUID
    customer: str
    plan: str
    plan_version: int
    plan_version_id: uuid.UUID
    status: Status
    quantity: int
    billing: BillingMode
    start: dt.datetime
    trial_end: dt.datetime | None
    current_period: Period | None
    cancel_at_period_end: bool
    canceled_at: dt.datetime | None
    paused_at: dt.datetime | None
    ended_at: dt.datetime | None
    coupon: str | None
    metadata: Mapping[str, str]
    trial_end_behavior: str
    test_clock_id: uuid.UUID | None
    next_due_at: dt.datetime | None
    created_at: dt.datetime
    usage_since: dt.datetime | None = None  # where the usage not yet billed begins

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": str(self.subscription_id),
            "external_id": self.external_id,
            "customer": self.customer,
            "plan": self.plan,
            "plan_version": self.plan_version,
            "status": self.status.value,
            "quantity": self.quantity,
            "billing": self.billing.value,
            "start": _stamp(self.start),
            "trial_end": _stamp(self.trial_end),
            "current_period": (
                {"start": _stamp(self.current_period.start), "end": _stamp(self.current_period.end)}
                if self.current_period
                else None
            ),
            "cancel_at_period_end": self.cancel_at_period_end,
            "canceled_at": _stamp(self.canceled_at),
            "paused_at": _stamp(self.paused_at),
            "ended_at": _stamp(self.ended_at),
            "coupon": self.coupon,
            "metadata": dict(self.metadata),
        }


def _views(conn: sa.Connection, rows: Sequence[Any]) -> list[SubscriptionView]:
    """Views of subscription rows (or anything with their attributes), with their customers' external
    ids, plan versions and coupon codes: cached facts, so mostly without a query."""
    if not rows:
        return []
    tenant_id = rows[0].tenant_id
    versions = catalog_store.versions_by_id(
        conn, tenant_id=tenant_id, version_ids=[r.plan_version_id for r in rows]
    )
    customer_ids = customer_store.external_ids(
        conn, tenant_id=tenant_id, customer_ids={r.customer_id for r in rows}
    )
    coupon_codes = catalog_store.coupon_codes(
        conn, tenant_id=tenant_id, coupon_ids={r.coupon_id for r in rows if r.coupon_id is not None}
    )
    return [
        SubscriptionView(
            subscription_id=r.subscription_id,
            external_id=r.external_id,
            customer_id=r.customer_id,
            customer=customer_ids[r.customer_id],
            plan=versions[r.plan_version_id].plan_code,
            plan_version=versions[r.plan_version_id].version.version,
            plan_version_id=r.plan_version_id,
            status=Status(r.status),
            quantity=r.quantity,
            billing=BillingMode(r.billing),
            start=r.start_at,
            trial_end=r.trial_end,
            current_period=Period(r.current_period_start, r.current_period_end)
            if r.current_period_start
            else None,
            cancel_at_period_end=r.cancel_at_period_end,
            canceled_at=r.canceled_at,
            paused_at=r.paused_at,
            ended_at=r.ended_at,
            coupon=coupon_codes.get(r.coupon_id) if r.coupon_id else None,
            metadata=r.metadata,
            trial_end_behavior=r.trial_end_behavior,
            test_clock_id=r.test_clock_id,
            next_due_at=r.next_due_at,
            created_at=r.created_at,
            usage_since=dt.datetime.fromisoformat(r.segments[0]["start"]) if r.segments else None,
        )
        for r in rows
    ]


# --- loading and saving state -------------------------------------------------------------


def load_terms(
    conn: sa.Connection, tenant_id: uuid.UUID, version_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, VersionTerms]:
    """The lifecycle's view of plan versions, by id."""
    found = catalog_store.versions_by_id(conn, tenant_id=tenant_id, version_ids=version_ids)
    terms = {}
    for version_id, version in found.items():
        cached = _TERMS.get((tenant_id, version_id))
        if cached is None:
            cached = _terms_of(version)
            if version.version.status == "published":  # frozen: what was read stays true
                _TERMS.put((tenant_id, version_id), cached)
        terms[version_id] = cached
    return terms


_TERMS = FactCache[tuple[uuid.UUID, uuid.UUID], VersionTerms](size=20_000)


def _terms_of(found: catalog_store.VersionWithPlan) -> VersionTerms:
    terms = plans.parse_terms(found.version.terms_spec(), pointer="")
    return VersionTerms.of(
        plan_version_id=found.version.plan_version_id,
        plan_code=found.plan_code,
        version=found.version.version,
        currency=money.currency(found.currency),
        interval=terms.interval,
        trial_days=terms.trial_days,
        charges=terms.charges,
    )


@dataclasses.dataclass(frozen=True)
class _Context:
    """What a step needs besides the subscription row: time zone, proration, payment method."""

    tz: str
    proration: ProrationUnit
    has_payment_method: bool


def _context(conn: sa.Connection, tenant_id: uuid.UUID, customer_id: uuid.UUID) -> _Context:
    tenant = tenant_store.get(conn, tenant_id)
    customer = customer_store.get(conn, tenant_id=tenant_id, customer_id=customer_id)
    if tenant is None or customer is None:
        raise SubscriptionNotFound("the subscription's customer no longer exists")
    return _context_of(tenant, customer)


def _context_of(tenant: tenant_store.Tenant, customer: sa.Row[Any]) -> _Context:
    return _Context(
        tz=customer.timezone or tenant.timezone,
        proration=ProrationUnit(tenant.proration),
        has_payment_method=customer.payment_method is not None,
    )


def _segments_from(raw: Sequence[Mapping[str, Any]]) -> tuple[subscriptions.Segment, ...]:
    return tuple(
        subscriptions.Segment(
            start=dt.datetime.fromisoformat(s["start"]),
            end=dt.datetime.fromisoformat(s["end"]) if s["end"] else None,
            plan_version_id=uuid.UUID(s["plan_version_id"]),
            quantity=int(s["quantity"]),
            fees=bool(s["fees"]),
        )
        for s in raw
    )


def _segments_json(segments: Sequence[subscriptions.Segment]) -> list[dict[str, Any]]:
    return [
        {
            "start": s.start.isoformat(),
            "end": s.end.isoformat() if s.end else None,
            "plan_version_id": str(s.plan_version_id),
            "quantity": s.quantity,
            "fees": s.fees,
        }
        for s in segments
    ]


def _state(row: sa.Row[Any], terms: VersionTerms, context: _Context) -> State:
    return State(
        status=Status(row.status),
        terms=terms,
        quantity=row.quantity,
        billing=BillingMode(row.billing),
        tz=context.tz,
        proration=context.proration,
        start=row.start_at,
        anchor=row.anchor,
        trial_end=row.trial_end,
        period=Period(row.current_period_start, row.current_period_end) if row.current_period_start else None,
        segments=_segments_from(row.segments),
        advance_billed=row.advance_billed,
        cancel_at_period_end=row.cancel_at_period_end,
        canceled_at=row.canceled_at,
        paused_at=row.paused_at,
        ended_at=row.ended_at,
        prior_status=Status(row.prior_status) if row.prior_status else None,
    )


def _state_values(state: State) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "plan_version_id": state.terms.plan_version_id,
        "quantity": state.quantity,
        "start_at": state.start,
        "anchor": state.anchor,
        "trial_end": state.trial_end,
        "current_period_start": state.period.start if state.period else None,
        "current_period_end": state.period.end if state.period else None,
        "segments": _segments_json(state.segments),
        "advance_billed": state.advance_billed,
        "cancel_at_period_end": state.cancel_at_period_end,
        "canceled_at": state.canceled_at,
        "paused_at": state.paused_at,
        "ended_at": state.ended_at,
        "prior_status": state.prior_status.value if state.prior_status else None,
    }


def _next_due_at(state: State, pending: Sequence[store.ScheduledChange]) -> dt.datetime | None:
    lifecycle = subscriptions.next_due(state)
    if lifecycle is None:
        return None
    instants = [c.effective_at for c in pending if not c.at_period_end and c.effective_at < lifecycle]
    return min([lifecycle, *instants])


_EVENTS: dict[Action, str] = {
    Action.CREATE: "subscription.created",
    Action.START: "subscription.activated",
    Action.END_TRIAL: "subscription.trial_ended",
    Action.RENEW: "subscription.renewed",
    Action.PAUSE: "subscription.paused",
    Action.RESUME: "subscription.resumed",
    Action.CANCEL: "subscription.canceled",
    Action.CANCEL_NOW: "subscription.canceled",
    Action.UNCANCEL: "subscription.uncanceled",
    Action.END: "subscription.ended",
    Action.MARK_PAST_DUE: "subscription.past_due",
    Action.RECOVER: "subscription.recovered",
}


def _event_types(transition: subscriptions.Transition, before: State | None, after: State) -> list[str]:
    if transition.action is Action.CHANGE:
        types = []
        if before is None or before.terms.plan_version_id != after.terms.plan_version_id:
            types.append("subscription.plan_changed")
        if before is None or before.quantity != after.quantity:
            types.append("subscription.quantity_changed")
        return types
    types = [_EVENTS[transition.action]]
    if transition.action is Action.CANCEL_NOW:
        types.append("subscription.ended")
    if transition.action in (Action.CREATE, Action.START) and transition.to_status is Status.TRIALING:
        types.append("subscription.trial_started")
    elif transition.action is Action.CREATE and transition.to_status is Status.ACTIVE:
        types.append("subscription.activated")
    if transition.action is Action.END_TRIAL and transition.to_status is Status.ACTIVE:
        types.append("subscription.activated")
    return types


@dataclasses.dataclass
class _Batch:
    """Many subscriptions' due work in one transaction: what was read for all of them at once,
    and their writes, held to be written together at the end."""

    rows: dict[uuid.UUID, sa.Row[Any]]
    pending: dict[uuid.UUID, list[store.ScheduledChange]]
    contexts: dict[uuid.UUID, _Context]
    last_seq: dict[uuid.UUID, int]
    updates: list[tuple[uuid.UUID, dict[str, Any]]] = dataclasses.field(default_factory=list)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    points: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @classmethod
    def load(
        cls, conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID]
    ) -> _Batch:
        rows = store.lock_many(conn, tenant_id=tenant_id, subscription_ids=subscription_ids)
        tenant = tenant_store.get(conn, tenant_id)
        customers = customer_store.get_many(
            conn, tenant_id=tenant_id, customer_ids=sorted({r.customer_id for r in rows.values()})
        )
        if tenant is None:
            raise SubscriptionNotFound("the subscriptions' tenant no longer exists")
        # Warm the cache the views read from: one statement, not one per subscription.
        customer_store.external_ids(conn, tenant_id=tenant_id, customer_ids=set(customers))
        return cls(
            rows=rows,
            pending=store.pending_changes_of_many(conn, tenant_id=tenant_id, subscription_ids=list(rows)),
            contexts={cid: _context_of(tenant, c) for cid, c in customers.items()},
            last_seq=store.last_history_seqs(conn, tenant_id=tenant_id, subscription_ids=list(rows)),
        )

    def write(self, conn: sa.Connection, *, tenant_id: uuid.UUID) -> None:
        by_columns: dict[tuple[str, ...], list[tuple[uuid.UUID, dict[str, Any]]]] = {}
        for sid, values in self.updates:
            by_columns.setdefault(tuple(values), []).append((sid, values))
        for updates in by_columns.values():
            store.update_many(conn, tenant_id=tenant_id, updates=updates)
        insert_rows(conn, subscription_history_table, self.history)
        insert_rows(conn, billing_points_table, self.points)


def _persist(
    uow: UnitOfWork,
    row: sa.Row[Any],
    before: State | None,
    step: Step,
    *,
    details: Mapping[str, Any],
    test_clock_id: uuid.UUID | None,
    pending: Sequence[store.ScheduledChange] | None = None,
    batch: _Batch | None = None,
) -> SubscriptionView:
    """Save a step's outcome: state, history, billing point, audit record and events.

    `pending` are the subscription's scheduled changes still to apply, if the caller has them;
    with a `batch`, the writes wait in it to be written with the others'.
    """
    subscription_id = row.subscription_id
    if pending is None:
        pending = store.scheduled_changes_of(
            uow.conn, tenant_id=uow.tenant_id, subscription_id=subscription_id, pending_only=True
        )
    values = _state_values(step.state) | {
        "next_due_at": _next_due_at(step.state, pending),
        "lock_version": row.lock_version + 1,
        "updated_at": uow.now,
    }
    state = step.state
    history_rows = [
        {
            "action": t.action.value,
            "at": t.at,
            "from_status": t.from_status.value if t.from_status else None,
            "to_status": t.to_status.value,
            "reason": t.reason,
            "plan_version_id": state.terms.plan_version_id,
            "quantity": state.quantity,
            "period_start": state.period.start if state.period else None,
            "period_end": state.period.end if state.period else None,
            "actor": str(uow.actor),
            "details": dict(details),
        }
        for t in step.transitions
    ]
    if batch is None:
        store.update(uow.conn, tenant_id=uow.tenant_id, subscription_id=subscription_id, values=values)
        first_seq = store.append_history(
            uow.conn, tenant_id=uow.tenant_id, subscription_id=subscription_id, rows=history_rows
        )
    else:
        batch.updates.append((subscription_id, values))
        first_seq = batch.last_seq.get(subscription_id, 0) + 1
        batch.last_seq[subscription_id] = first_seq + len(history_rows) - 1
        batch.history += [
            {"tenant_id": uow.tenant_id, "subscription_id": subscription_id, "seq": first_seq + i, **r}
            for i, r in enumerate(history_rows)
        ]
    if step.billing is not None:
        _save_billing_point(
            uow,
            subscription_id,
            step.billing,
            history_seq=first_seq,
            test_clock_id=test_clock_id,
            batch=batch,
        )
    view = _views(uow.conn, [types.SimpleNamespace(**(dict(row._mapping) | values))])[0]
    snapshot = view.snapshot()
    uow.record(
        f"subscription.{step.transitions[0].action.value}",
        entity_type="subscription",
        entity_id=str(subscription_id),
        before=details.get("before"),
        after=snapshot,
    )
    for transition in step.transitions:
        for event_type in _event_types(transition, before, state):
            uow.emit(event_type, entity_type="subscription", entity_id=str(subscription_id), payload=snapshot)
    return view


def _period_json(period: Period) -> dict[str, str]:
    return {"start": period.start.isoformat(), "end": period.end.isoformat()}


def _save_billing_point(
    uow: UnitOfWork,
    subscription_id: uuid.UUID,
    point: subscriptions.BillingPoint,
    *,
    history_seq: int,
    test_clock_id: uuid.UUID | None,
    batch: _Batch | None = None,
) -> None:
    values = {
        "tenant_id": uow.tenant_id,
        "billing_point_id": ids.new_id(),
        "subscription_id": subscription_id,
        "history_seq": history_seq,
        "reason": point.reason.value,
        "at": point.at,
        "period_start": point.period.start,
        "period_end": point.period.end,
        "fee_lines": [
            {
                "kind": line.kind,
                "charge": line.charge,
                "description": line.description,
                "period": _period_json(line.period),
                "quantity": str(line.quantity),
                "unit_amount": str(line.unit_amount),
                "amount": str(line.amount),
                "plan_version_id": str(line.plan_version_id),
            }
            for line in point.fee_lines
        ],
        "usage": [
            {
                "plan_version_id": str(window.plan_version_id),
                "window": _period_json(window.window),
                "period": _period_json(window.period),
            }
            for window in point.usage
        ],
        "test_clock_id": test_clock_id,
        "created_at": uow.now,
    }
    if batch is None:
        store.insert_billing_point(uow.conn, values)
    else:
        batch.points.append(values)


def _view_of(conn: sa.Connection, tenant_id: uuid.UUID, subscription_id: uuid.UUID) -> SubscriptionView:
    row = store.get(conn, tenant_id=tenant_id, subscription_id=subscription_id)
    if row is None:
        raise SubscriptionNotFound(f"no subscription {subscription_id}")
    return _views(conn, [row])[0]


def effective_now(
    conn: sa.Connection, *, tenant_id: uuid.UUID, test_clock_id: uuid.UUID | None, now: dt.datetime
) -> dt.datetime:
    """The time a customer lives at: its test clock's, or the real `now`."""
    if test_clock_id is None:
        return now
    clock = clock_store.get(conn, tenant_id=tenant_id, test_clock_id=test_clock_id)
    if clock is None:
        raise NotFound(f"no test clock {test_clock_id}")
    return clock.frozen_time


# --- create --------------------------------------------------------------------------------


def _resolve_version(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    plan_code: object,
    version: object,
    pointer: str = "",
) -> catalog_store.VersionWithPlan:
    """The plan version a subscription is to use: the one asked for, or the newest published."""
    code = codes.code(plan_code, field=f"{pointer}/plan")
    plan_row = catalog_store.get_row(conn, catalog_store.PLANS, tenant_id=tenant_id, code=code)
    if plan_row is None:
        raise InvalidChange(f"there is no plan {code!r}", field=f"{pointer}/plan")
    published = catalog_store.plan_versions_of(
        conn, tenant_id=tenant_id, plan_ids=[plan_row.plan_id], status=plans.VersionStatus.PUBLISHED.value
    )
    if version is not None:
        number = codes.integer(version, field=f"{pointer}/plan_version", minimum=1)
        published = [v for v in published if v.version == number]
        if not published:
            raise InvalidChange(
                f"plan {code!r} has no published version {number}", field=f"{pointer}/plan_version"
            )
    elif plan_row.archived_at is not None:
        raise InvalidChange(f"plan {code!r} is archived", field=f"{pointer}/plan")
    if not published:
        raise InvalidChange(f"plan {code!r} has no published version yet", field=f"{pointer}/plan")
    chosen = published[-1]
    return catalog_store.versions_by_id(conn, tenant_id=tenant_id, version_ids=[chosen.plan_version_id])[
        chosen.plan_version_id
    ]


def _instant(value: object, *, field: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        instant = value
    elif isinstance(value, str):
        try:
            instant = dt.datetime.fromisoformat(value)
        except ValueError:
            raise codes.InvalidValue(f"{value!r} is not an RFC 3339 instant", field=field) from None
    else:
        raise codes.InvalidValue("expected an RFC 3339 instant", field=field)
    if instant.tzinfo is None:
        raise codes.InvalidValue(f"{value!r} has no UTC offset", field=field)
    return require_aware(instant)


def _coupon(
    uow: UnitOfWork, *, code: object, plan_code: str, currency: str, at: dt.datetime
) -> uuid.UUID | None:
    if code is None:
        return None
    coupon_code = codes.code(code, field="/coupon")
    # Locked, so two redemptions racing for the last one are counted one after the other.
    row = catalog_store.get_row(
        uow.conn, catalog_store.COUPONS, tenant_id=uow.tenant_id, code=coupon_code, for_update=True
    )
    if row is None or row.archived_at is not None:
        raise CouponNotRedeemable(f"there is no active coupon {coupon_code!r}", field="/coupon")
    coupon = CouponView.of(row).coupon
    redemptions = uow.conn.execute(
        sa.select(sa.func.count())
        .select_from(subscriptions_table)
        .where(
            subscriptions_table.c.tenant_id == uow.tenant_id, subscriptions_table.c.coupon_id == row.coupon_id
        )
    ).scalar_one()
    if not coupon.can_redeem(at=at, redemptions=redemptions):
        raise CouponNotRedeemable(
            f"coupon {coupon_code!r} has expired or reached its redemption limit", field="/coupon"
        )
    if coupon.applies_to_plans and plan_code not in coupon.applies_to_plans:
        raise CouponNotRedeemable(
            f"coupon {coupon_code!r} does not apply to plan {plan_code!r}", field="/coupon"
        )
    if not coupon.applies_in(money.currency(currency)):
        raise CouponNotRedeemable(f"coupon {coupon_code!r} is for another currency", field="/coupon")
    coupon_id: uuid.UUID = row.coupon_id
    return coupon_id


def create_subscription(
    db: TransactionSource, *, tenant_id: uuid.UUID, spec: Mapping[str, object], actor: Actor, now: dt.datetime
) -> SubscriptionView:
    """Subscribe a customer to a plan (its newest published version unless one is named).

    `start` defaults to now (the customer's clock); a future start makes it pending, a past
    one backdates it (the periods since are billed as due work catches up). The customer's
    currency must be the plan's.
    """
    codes.only_keys(spec, _CREATE_FIELDS, pointer="", what="a subscription")
    external_id = spec.get("external_id")
    if external_id is not None and (not isinstance(external_id, str) or not 1 <= len(external_id) <= 200):
        raise codes.InvalidValue("external_id is text of 1 to 200 characters", field="/external_id")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        customer = _customer_of(uow.conn, tenant_id=tenant_id, spec=spec)
        found = _resolve_version(
            uow.conn, tenant_id=tenant_id, plan_code=spec.get("plan"), version=spec.get("plan_version")
        )
        if found.currency != customer.currency:
            raise InvalidChange(
                f"plan {found.plan_code!r} is priced in {found.currency}; "
                f"the customer pays in {customer.currency}",
                field="/plan",
            )
        at = effective_now(uow.conn, tenant_id=tenant_id, test_clock_id=customer.test_clock_id, now=now)
        uow.now = at
        start = _instant(spec["start"], field="/start") if spec.get("start") is not None else at
        context = _context(uow.conn, tenant_id, customer.customer_id)
        terms = _terms_of(found)
        try:
            billing = BillingMode(str(spec.get("billing") or "anniversary"))
        except ValueError:
            raise codes.InvalidValue("billing is anniversary or calendar", field="/billing") from None
        try:
            behavior = subscriptions.TrialEndBehavior(str(spec.get("trial_end_behavior") or "activate"))
        except ValueError:
            raise codes.InvalidValue(
                "trial_end_behavior is activate, cancel or pause", field="/trial_end_behavior"
            ) from None
        trial_days = spec.get("trial_days")
        step = subscriptions.create(
            terms=terms,
            quantity=spec.get("quantity", 1),  # type: ignore[arg-type]
            billing=billing,
            tz=context.tz,
            proration=context.proration,
            start=start,
            now=at,
            trial_days=trial_days,  # type: ignore[arg-type]
            anchor=_instant(spec["anchor"], field="/anchor") if spec.get("anchor") is not None else None,
        )
        coupon_id = _coupon(
            uow, code=spec.get("coupon"), plan_code=found.plan_code, currency=found.currency, at=at
        )
        metadata = spec.get("metadata") or {}
        if not isinstance(metadata, Mapping) or not all(isinstance(v, str) for v in metadata.values()):
            raise codes.InvalidValue("metadata is an object of text values", field="/metadata")
        subscription_id = ids.new_id()
        store.insert(
            uow.conn,
            {
                "tenant_id": tenant_id,
                "subscription_id": subscription_id,
                "external_id": external_id,
                "customer_id": customer.customer_id,
                "plan_id": found.plan_id,
                "billing": billing.value,
                "trial_end_behavior": behavior.value,
                **_state_values(step.state),
                "usage_grid_offset_us": subscriptions.usage_grid_offset(step.state)
                // dt.timedelta(microseconds=1),
                "coupon_id": coupon_id,
                "metadata": dict(metadata),
                "test_clock_id": customer.test_clock_id,
                "next_due_at": None,
                "lock_version": 0,
                "created_at": at,
                "updated_at": at,
            },
        )
        row = store.get(uow.conn, tenant_id=tenant_id, subscription_id=subscription_id)
        assert row is not None  # noqa: S101 - inserted above in this transaction
        quarantine.release_held(
            uow.conn,
            tenant_id=tenant_id,
            now=at,
            subscription_refs=[
                str(subscription_id),
                *([external_id] if isinstance(external_id, str) else []),
            ],
            customer_refs=[customer.external_id],
        )
        details = {
            "plan_version_id": str(terms.plan_version_id),
            "quantity": step.state.quantity,
            "billing": billing.value,
            "start": start.isoformat(),
            "created_at": at.isoformat(),
            "trial_days": trial_days,
            "anchor": step.state.anchor.isoformat()
            if spec.get("anchor") is not None and step.state.anchor
            else None,
        }
        return _persist(uow, row, None, step, details=details, test_clock_id=customer.test_clock_id)


def _customer_of(conn: sa.Connection, *, tenant_id: uuid.UUID, spec: Mapping[str, object]) -> sa.Row[Any]:
    external, internal = spec.get("customer"), spec.get("customer_id")
    if (external is None) == (internal is None):
        raise codes.MissingField(
            "name the customer by customer (its external id) or customer_id", field="/customer"
        )
    if internal is not None:
        try:
            customer_id = internal if isinstance(internal, uuid.UUID) else uuid.UUID(str(internal))
        except ValueError:
            raise codes.InvalidValue("customer_id is an id", field="/customer_id") from None
        row = customer_store.get(conn, tenant_id=tenant_id, customer_id=customer_id)
        field = "/customer_id"
    else:
        row = customer_store.get(conn, tenant_id=tenant_id, external_id=str(external))
        field = "/customer"
    if row is None:
        raise InvalidChange(f"there is no customer {internal or external}", field=field)
    return row


# --- operations ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Locked:
    row: sa.Row[Any]
    state: State
    terms: dict[uuid.UUID, VersionTerms]
    context: _Context


def _lock(uow: UnitOfWork, subscription_id: uuid.UUID, *, now: dt.datetime, wait: bool = False) -> _Locked:
    """Lock the subscription (refusing at once if another request holds it) and load its state."""
    try:
        row = store.get(
            uow.conn,
            tenant_id=uow.tenant_id,
            subscription_id=subscription_id,
            lock="wait" if wait else "nowait",
        )
    except store.Busy:
        current = _current_snapshot(uow.tenant_id, subscription_id, uow)
        raise SubscriptionBusy(
            "another request is changing this subscription right now; retry with its current state in mind",
            context={"current": current},
        ) from None
    if row is None:
        raise SubscriptionNotFound(f"no subscription {subscription_id}")
    uow.now = effective_now(uow.conn, tenant_id=uow.tenant_id, test_clock_id=row.test_clock_id, now=now)
    segment_versions = [s.plan_version_id for s in _segments_from(row.segments)]
    terms = load_terms(uow.conn, uow.tenant_id, [row.plan_version_id, *segment_versions])
    context = _context(uow.conn, uow.tenant_id, row.customer_id)
    return _Locked(row, _state(row, terms[row.plan_version_id], context), terms, context)


def _current_snapshot(
    tenant_id: uuid.UUID, subscription_id: uuid.UUID, uow: UnitOfWork
) -> dict[str, Any] | None:
    # The locked row's last committed state is readable without the lock.
    try:
        return _view_of(uow.conn, tenant_id, subscription_id).snapshot()
    except SubscriptionNotFound:
        return None


def _operate(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    actor: Actor,
    now: dt.datetime,
    step_of: Any,
    details: Mapping[str, Any],
) -> SubscriptionView:
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        locked = _lock(uow, subscription_id, now=now)
        before = _views(uow.conn, [locked.row])[0].snapshot()
        step = step_of(locked, uow.now)
        return _persist(
            uow,
            locked.row,
            locked.state,
            step,
            details=dict(details) | {"before": before},
            test_clock_id=locked.row.test_clock_id,
        )


def pause_subscription(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> SubscriptionView:
    """Pause now: no fees until resumed (the unused part of in-advance fees is credited)."""
    return _operate(
        db,
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        actor=actor,
        now=now,
        step_of=lambda locked, at: subscriptions.pause(locked.state, at=at),
        details={},
    )


def resume_subscription(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> SubscriptionView:
    """Resume now: fees start again, the in-advance ones prorated for the rest of the period."""
    return _operate(
        db,
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        actor=actor,
        now=now,
        step_of=lambda locked, at: subscriptions.resume(locked.state, at=at),
        details={},
    )


def cancel_subscription(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    timing: str,
    actor: Actor,
    now: dt.datetime,
) -> SubscriptionView:
    """Cancel at period end (default) or immediately, with a final prorated invoice."""
    try:
        when = ChangeTiming(timing)
    except ValueError:
        raise codes.InvalidValue("timing is immediate or period_end", field="/timing") from None
    return _operate(
        db,
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        actor=actor,
        now=now,
        step_of=lambda locked, at: subscriptions.cancel(locked.state, at=at, timing=when),
        details={"timing": when.value},
    )


def uncancel_subscription(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> SubscriptionView:
    """Take back a cancellation at period end before it takes effect."""
    return _operate(
        db,
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        actor=actor,
        now=now,
        step_of=lambda locked, at: subscriptions.uncancel(locked.state, at=at),
        details={},
    )


def mark_past_due(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> SubscriptionView:
    """An invoice of the subscription is overdue (dunning calls this); it stays billed."""
    return _operate(
        db,
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        actor=actor,
        now=now,
        step_of=lambda locked, at: subscriptions.mark_past_due(locked.state, at=at),
        details={},
    )


def recover(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> SubscriptionView:
    """Its overdue invoices are settled: back to active."""
    return _operate(
        db,
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        actor=actor,
        now=now,
        step_of=lambda locked, at: subscriptions.recover(locked.state, at=at),
        details={},
    )


def update_subscription(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    changes: Mapping[str, object],
    actor: Actor,
    now: dt.datetime,
) -> SubscriptionView:
    """Change what is not billing state: metadata, and what a trial's end does without a payment method."""
    codes.only_keys(changes, ("metadata", "trial_end_behavior"), pointer="", what="a subscription update")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        locked = _lock(uow, subscription_id, now=now)
        before = _views(uow.conn, [locked.row])[0]
        values: dict[str, Any] = {}
        if changes.get("metadata") is not None:
            metadata = changes["metadata"]
            if not isinstance(metadata, Mapping) or not all(isinstance(v, str) for v in metadata.values()):
                raise codes.InvalidValue("metadata is an object of text values", field="/metadata")
            values["metadata"] = dict(metadata)
        if changes.get("trial_end_behavior") is not None:
            try:
                values["trial_end_behavior"] = subscriptions.TrialEndBehavior(
                    str(changes["trial_end_behavior"])
                ).value
            except ValueError:
                raise codes.InvalidValue(
                    "trial_end_behavior is activate, cancel or pause", field="/trial_end_behavior"
                ) from None
        if not values:
            return before
        store.update(
            uow.conn,
            tenant_id=tenant_id,
            subscription_id=subscription_id,
            values=values | {"lock_version": locked.row.lock_version + 1, "updated_at": uow.now},
        )
        after = _view_of(uow.conn, tenant_id, subscription_id)
        uow.changed(
            "subscription.updated",
            entity_type="subscription",
            entity_id=str(subscription_id),
            before=before.snapshot(),
            after=after.snapshot(),
        )
        return after


@dataclasses.dataclass(frozen=True)
class ChangeOutcome:
    subscription: SubscriptionView
    scheduled: store.ScheduledChange | None  # set when the change waits for a later instant


def _target(uow: UnitOfWork, state: State, spec: Mapping[str, object]) -> tuple[VersionTerms, int]:
    """The plan version and quantity a change asks for (unnamed ones stay as they are)."""
    plan_code = spec.get("plan")
    if plan_code is None and spec.get("plan_version") is not None:
        plan_code = state.terms.plan_code
    terms = state.terms
    if plan_code is not None:
        found = _resolve_version(
            uow.conn, tenant_id=uow.tenant_id, plan_code=plan_code, version=spec.get("plan_version")
        )
        if found.currency != state.terms.currency.code:
            raise InvalidChange(
                f"plan {found.plan_code!r} is priced in {found.currency}, "
                f"the subscription in {state.terms.currency.code}",
                field="/plan",
            )
        terms = _terms_of(found)
    quantity = spec.get("quantity", state.quantity)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidChange("quantity is a whole number of at least 1", field="/quantity")
    if terms.plan_version_id == state.terms.plan_version_id and quantity == state.quantity:
        raise subscriptions.NothingToChange("the subscription already has this plan version and quantity")
    return terms, quantity


def _when(
    state: State, spec: Mapping[str, object], *, terms: VersionTerms, quantity: int, now: dt.datetime
) -> tuple[ChangeTiming | None, dt.datetime]:
    """When a change takes effect: (IMMEDIATE, now), (PERIOD_END, now) or (None, a later instant)."""
    at_value, timing_value = spec.get("at"), spec.get("timing")
    if at_value is not None and timing_value is not None:
        raise InvalidChange("give timing or at, not both", field="/at")
    if at_value is not None:
        effective = _instant(at_value, field="/at")
        if effective < now:
            raise InvalidChange("a scheduled change cannot be in the past", field="/at")
        return (ChangeTiming.IMMEDIATE if effective == now else None), effective
    if timing_value is not None:
        try:
            return ChangeTiming(str(timing_value)), now
        except ValueError:
            raise InvalidChange("timing is immediate or period_end", field="/timing") from None
    upgrade = subscriptions.is_upgrade(state, terms, quantity) or state.status is Status.PENDING
    return (ChangeTiming.IMMEDIATE if upgrade else ChangeTiming.PERIOD_END), now


def change_subscription(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    spec: Mapping[str, object],
    actor: Actor,
    now: dt.datetime,
) -> ChangeOutcome:
    """Change plan, plan version or quantity: `immediate`, at `period_end`, or `at` an instant.

    Without a timing an upgrade (more per day, a quantity increase included) is immediate and
    anything else waits for the period's end. A change at a later instant or at period end is
    stored as a scheduled change (one at period end replaces any earlier one) and listable.
    """
    codes.only_keys(spec, _CHANGE_FIELDS, pointer="", what="a change")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        locked = _lock(uow, subscription_id, now=now)
        state = locked.state
        subscriptions.check(state.status, Action.CHANGE)
        terms, quantity = _target(uow, state, spec)
        timing, effective = _when(state, spec, terms=terms, quantity=quantity, now=uow.now)
        if timing is ChangeTiming.IMMEDIATE and state.period is not None and uow.now >= state.period.end:
            # The period ends now and its boundary has not run yet: the change applies to the
            # period that starts here, unprorated, on the boundary's invoice.
            # It replaces any change already waiting for this period's end.
            return _schedule(uow, locked, terms=terms, quantity=quantity, at_period_end=True, at=uow.now)
        if timing is ChangeTiming.IMMEDIATE:
            step = subscriptions.change(
                state,
                at=uow.now,
                terms=terms,
                quantity=quantity,
                terms_by_version=locked.terms | {terms.plan_version_id: terms},
            )
            details = {
                "plan_version_id": str(terms.plan_version_id),
                "quantity": quantity,
                "before": _views(uow.conn, [locked.row])[0].snapshot(),
            }
            view = _persist(
                uow, locked.row, state, step, details=details, test_clock_id=locked.row.test_clock_id
            )
            return ChangeOutcome(view, None)
        return _schedule(
            uow, locked, terms=terms, quantity=quantity, at_period_end=timing is not None, at=effective
        )


def _schedule(
    uow: UnitOfWork,
    locked: _Locked,
    *,
    terms: VersionTerms,
    quantity: int,
    at_period_end: bool,
    at: dt.datetime,
) -> ChangeOutcome:
    state, subscription_id = locked.state, locked.row.subscription_id
    if state.period is None:
        raise InvalidChange("the subscription has no period yet; change it immediately", field="/timing")
    if at_period_end:
        at = state.period.end
        for pending in store.scheduled_changes_of(
            uow.conn, tenant_id=uow.tenant_id, subscription_id=subscription_id, pending_only=True
        ):
            if pending.at_period_end:
                store.settle_scheduled_change(
                    uow.conn,
                    tenant_id=uow.tenant_id,
                    scheduled_change_id=pending.scheduled_change_id,
                    status="canceled",
                    at=uow.now,
                )
    scheduled = store.insert_scheduled_change(
        uow.conn,
        {
            "tenant_id": uow.tenant_id,
            "scheduled_change_id": ids.new_id(),
            "subscription_id": subscription_id,
            "at_period_end": at_period_end,
            "effective_at": at,
            "plan_version_id": terms.plan_version_id,
            "quantity": quantity,
            "status": "scheduled",
            "created_at": uow.now,
            "created_by": str(uow.actor),
        },
    )
    _refresh_next_due(uow, locked)
    view = _view_of(uow.conn, uow.tenant_id, subscription_id)
    uow.changed(
        "subscription.change_scheduled",
        entity_type="subscription",
        entity_id=str(subscription_id),
        before=None,
        after=view.snapshot() | {"scheduled_change": _scheduled_json(scheduled)},
    )
    return ChangeOutcome(view, scheduled)


def _scheduled_json(change: store.ScheduledChange) -> dict[str, Any]:
    return {
        "id": str(change.scheduled_change_id),
        "effective_at": change.effective_at.isoformat(),
        "at_period_end": change.at_period_end,
        "plan_version_id": str(change.plan_version_id),
        "quantity": change.quantity,
        "status": change.status,
    }


def _refresh_next_due(uow: UnitOfWork, locked: _Locked) -> None:
    pending = store.scheduled_changes_of(
        uow.conn, tenant_id=uow.tenant_id, subscription_id=locked.row.subscription_id, pending_only=True
    )
    store.update(
        uow.conn,
        tenant_id=uow.tenant_id,
        subscription_id=locked.row.subscription_id,
        values={"next_due_at": _next_due_at(locked.state, pending), "updated_at": uow.now},
    )


def cancel_scheduled_change(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    scheduled_change_id: uuid.UUID,
    actor: Actor,
    now: dt.datetime,
) -> store.ScheduledChange:
    """Withdraw a scheduled change that has not happened yet."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        locked = _lock(uow, subscription_id, now=now)
        pending = {
            c.scheduled_change_id: c
            for c in store.scheduled_changes_of(
                uow.conn, tenant_id=tenant_id, subscription_id=subscription_id, pending_only=False
            )
        }
        change = pending.get(scheduled_change_id)
        if change is None:
            raise NotFound(f"no scheduled change {scheduled_change_id} on this subscription")
        if change.status != "scheduled":
            raise Conflict(f"the change is already {change.status}")
        store.settle_scheduled_change(
            uow.conn,
            tenant_id=tenant_id,
            scheduled_change_id=scheduled_change_id,
            status="canceled",
            at=uow.now,
        )
        _refresh_next_due(uow, locked)
        settled = dataclasses.replace(change, status="canceled", settled_at=uow.now)
        uow.changed(
            "subscription.scheduled_change_canceled",
            entity_type="subscription",
            entity_id=str(subscription_id),
            before=_scheduled_json(change),
            after=_scheduled_json(settled),
        )
        return settled


# --- reads ---------------------------------------------------------------------------------


def get_subscription(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID | None = None,
    external_id: str | None = None,
) -> SubscriptionView:
    with read_only(db) as conn:
        return subscription_on(
            conn, tenant_id=tenant_id, subscription_id=subscription_id, external_id=external_id
        )


def subscription_on(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID | None = None,
    external_id: str | None = None,
) -> SubscriptionView:
    """`get_subscription` within a transaction the caller holds (a snapshot, say)."""
    row = store.get(conn, tenant_id=tenant_id, subscription_id=subscription_id, external_id=external_id)
    if row is None:
        raise SubscriptionNotFound(f"no subscription {subscription_id or external_id}")
    return _views(conn, [row])[0]


def list_subscriptions(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    customer_id: uuid.UUID | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> Page[SubscriptionView]:
    if status is not None and status not in set(Status):
        raise codes.InvalidValue(f"unknown status {status!r}", field="status")
    query = store.select_for_tenant(tenant_id, customer_id=customer_id, status=status)
    with read_only(db) as conn:
        page = fetch_page(
            conn,
            query,
            query.selected_columns.subscription_id,
            cursor=cursor,
            limit=limit,
            descending=True,
            to_item=lambda row: row,
            key_of=lambda row: row.subscription_id,
            parse_key=uuid.UUID,
        )
        return Page(items=_views(conn, page.items), next_cursor=page.next_cursor)


@dataclasses.dataclass(frozen=True)
class TimelineEntry:
    seq: int
    action: str
    at: dt.datetime
    from_status: str | None
    to_status: str
    reason: str
    plan_version_id: uuid.UUID
    quantity: int
    period: Period | None
    actor: str
    details: Mapping[str, Any]


def timeline(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID
) -> list[TimelineEntry]:
    """Every transition the subscription went through, in order, each with its reason."""
    with read_only(db) as conn:
        if store.get(conn, tenant_id=tenant_id, subscription_id=subscription_id) is None:
            raise SubscriptionNotFound(f"no subscription {subscription_id}")
        return [
            TimelineEntry(
                seq=r.seq,
                action=r.action,
                at=r.at,
                from_status=r.from_status,
                to_status=r.to_status,
                reason=r.reason,
                plan_version_id=r.plan_version_id,
                quantity=r.quantity,
                period=Period(r.period_start, r.period_end) if r.period_start else None,
                actor=r.actor,
                details=r.details,
            )
            for r in store.history(conn, tenant_id=tenant_id, subscription_id=subscription_id)
        ]


def list_scheduled_changes(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, pending_only: bool
) -> list[store.ScheduledChange]:
    with read_only(db) as conn:
        if store.get(conn, tenant_id=tenant_id, subscription_id=subscription_id) is None:
            raise SubscriptionNotFound(f"no subscription {subscription_id}")
        return store.scheduled_changes_of(
            conn, tenant_id=tenant_id, subscription_id=subscription_id, pending_only=pending_only
        )


def billing_points(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID
) -> list[sa.Row[Any]]:
    with read_only(db) as conn:
        return store.billing_points_of(conn, tenant_id=tenant_id, subscription_id=subscription_id)


# --- due work ------------------------------------------------------------------------------


def process_due(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, at: dt.datetime
) -> bool:
    """Run the one transition due for the subscription at or before `at`, as of when it fell due.

    Returns False if nothing was due by the time the lock was taken (another worker did it).
    """
    with unit_of_work(db, tenant_id=tenant_id, actor=Actor.system("clock"), now=at) as uow:
        return _process_due(uow, subscription_id=subscription_id, at=at)


def process_due_many(
    db: TransactionSource, *, tenant_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID], at: dt.datetime
) -> int:
    """`process_due` for many subscriptions of one tenant in one transaction (one commit, one
    audit and outbox write for all); returns how many had something due."""
    with unit_of_work(db, tenant_id=tenant_id, actor=Actor.system("clock"), now=at) as uow:
        batch = _Batch.load(uow.conn, tenant_id=tenant_id, subscription_ids=subscription_ids)
        done = sum(_process_due(uow, subscription_id=sid, at=at, batch=batch) for sid in subscription_ids)
        batch.write(uow.conn, tenant_id=tenant_id)
        return done


def _process_due(
    uow: UnitOfWork, *, subscription_id: uuid.UUID, at: dt.datetime, batch: _Batch | None = None
) -> bool:
    tenant_id = uow.tenant_id
    if batch is None:
        row = store.get(uow.conn, tenant_id=tenant_id, subscription_id=subscription_id, lock="wait")
    else:
        row = batch.rows.get(subscription_id)
    if row is None or row.next_due_at is None or row.next_due_at > at:
        return False
    due = row.next_due_at
    uow.now = due
    if batch is None:
        pending = store.scheduled_changes_of(
            uow.conn, tenant_id=tenant_id, subscription_id=subscription_id, pending_only=True
        )
    else:
        pending = batch.pending.get(subscription_id, [])
    version_ids = [row.plan_version_id, *[c.plan_version_id for c in pending]]
    version_ids += [s.plan_version_id for s in _segments_from(row.segments)]
    terms = load_terms(uow.conn, tenant_id, version_ids)
    context = batch.contexts[row.customer_id] if batch else _context(uow.conn, tenant_id, row.customer_id)
    state = _state(row, terms[row.plan_version_id], context)
    lifecycle_due = subscriptions.next_due(state)
    settled: dict[uuid.UUID, str] = {}
    instant_change = next(
        (c for c in pending if not c.at_period_end and c.effective_at == due and due != lifecycle_due),
        None,
    )
    step: Step | None = None
    if instant_change is not None:
        step, ok = _apply_instant_change(state, instant_change, terms)
        settled[instant_change.scheduled_change_id] = "applied" if ok else "canceled"
    elif lifecycle_due is not None and due >= lifecycle_due:
        # A change for this boundary: one scheduled at period end, or at exactly this instant.
        boundary = next((c for c in pending if c.at_period_end or c.effective_at == due), None)
        if boundary is not None:
            usable = state.status not in (Status.CANCELED, Status.PENDING)
            settled[boundary.scheduled_change_id] = "applied" if usable else "canceled"
            boundary = boundary if usable else None
        step = subscriptions.due_step(
            state,
            terms_by_version=terms,
            change_at_boundary=(terms[boundary.plan_version_id], boundary.quantity) if boundary else None,
            has_payment_method=context.has_payment_method,
            trial_end_behavior=subscriptions.TrialEndBehavior(row.trial_end_behavior),
        )
    for change_id, status in settled.items():
        store.settle_scheduled_change(
            uow.conn, tenant_id=tenant_id, scheduled_change_id=change_id, status=status, at=due
        )
    still_pending = [c for c in pending if c.scheduled_change_id not in settled]
    if step is None:
        # Nothing is due after all (a stored instant went stale): only set it right.
        fixed = {"next_due_at": _next_due_at(state, still_pending)}
        if batch is None:
            store.update(uow.conn, tenant_id=tenant_id, subscription_id=subscription_id, values=fixed)
        else:
            batch.updates.append((subscription_id, fixed))
        return True
    before = _views(uow.conn, [row])[0].snapshot()
    _persist(
        uow,
        row,
        state,
        step,
        details={"before": before},
        test_clock_id=row.test_clock_id,
        pending=still_pending,
        batch=batch,
    )
    return True


def _apply_instant_change(
    state: State, change: store.ScheduledChange, terms: dict[uuid.UUID, VersionTerms]
) -> tuple[Step, bool]:
    """The step of a change scheduled for an instant, and whether it could apply."""
    try:
        step = subscriptions.change(
            state,
            at=change.effective_at,
            terms=terms[change.plan_version_id],
            quantity=change.quantity,
            terms_by_version=terms,
        )
    except (subscriptions.IllegalTransition, InvalidInput) as exc:
        # The subscription moved on (paused, canceled, ...) since the change was scheduled: the
        # change is withdrawn, and the history says why, rather than blocking the clock.
        note = subscriptions.Transition(
            Action.CHANGE,
            change.effective_at,
            state.status,
            state.status,
            f"scheduled change not applied: {exc.detail}",
        )
        return Step(state, (note,), None), False
    return step, True


class SubscriptionDueWork:
    """Due-work provider: starts, trial ends, scheduled changes and period ends of subscriptions."""

    name = "subscriptions"

    def next_due(self, conn: sa.Connection, *, scope: ClockScope, until: dt.datetime) -> dt.datetime | None:
        return store.earliest_due(
            conn, tenant_id=scope.tenant_id, test_clock_id=scope.test_clock_id, until=until
        )

    def run_due(self, db: TransactionSource, *, scope: ClockScope, at: dt.datetime) -> int:
        with read_only(db) as conn:
            due = store.due_at_or_before(
                conn, tenant_id=scope.tenant_id, test_clock_id=scope.test_clock_id, at=at, limit=DUE_BATCH
            )
        # Many subscriptions of a tenant in one transaction; should one fail, each on its own, so
        # one subscription's problem holds back no other.
        done = 0
        for tenant_id, chunk in _by_tenant(due, size=RENEWAL_BATCH):
            try:
                done += process_due_many(db, tenant_id=tenant_id, subscription_ids=chunk, at=at)
            except (AccrualError, sa.exc.DBAPIError):
                for subscription_id in chunk:
                    if process_due(db, tenant_id=tenant_id, subscription_id=subscription_id, at=at):
                        done += 1
        return done


def _by_tenant(
    due: Sequence[tuple[uuid.UUID, uuid.UUID]], *, size: int
) -> list[tuple[uuid.UUID, list[uuid.UUID]]]:
    chunks: list[tuple[uuid.UUID, list[uuid.UUID]]] = []
    for tenant_id, subscription_id in due:
        if chunks and chunks[-1][0] == tenant_id and len(chunks[-1][1]) < size:
            chunks[-1][1].append(subscription_id)
        else:
            chunks.append((tenant_id, [subscription_id]))
    return chunks
