"""Every (state, action) pair through the services: allowed ones record history and events,
refused ones raise a specific error and write nothing."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.domain import subscriptions as rules
from accrual.domain.subscriptions import Action, Status
from accrual.services import subscriptions
from tests.integration.services.subscriptions.conftest import ACTOR, T0, World

Op = Callable[[World, Any], Any]

ACTIONS: dict[Action, tuple[Op, list[str]]] = {
    Action.CHANGE: (
        lambda w, sid: subscriptions.change_subscription(
            w.db,
            tenant_id=w.tenant_id,
            subscription_id=sid,
            spec={"quantity": 3, "timing": "immediate"},
            actor=ACTOR,
            now=T0,
        ),
        ["subscription.quantity_changed"],
    ),
    Action.PAUSE: (
        lambda w, sid: subscriptions.pause_subscription(
            w.db, tenant_id=w.tenant_id, subscription_id=sid, actor=ACTOR, now=T0
        ),
        ["subscription.paused"],
    ),
    Action.RESUME: (
        lambda w, sid: subscriptions.resume_subscription(
            w.db, tenant_id=w.tenant_id, subscription_id=sid, actor=ACTOR, now=T0
        ),
        ["subscription.resumed"],
    ),
    Action.CANCEL: (
        lambda w, sid: subscriptions.cancel_subscription(
            w.db, tenant_id=w.tenant_id, subscription_id=sid, timing="period_end", actor=ACTOR, now=T0
        ),
        ["subscription.canceled"],
    ),
    Action.CANCEL_NOW: (
        lambda w, sid: subscriptions.cancel_subscription(
            w.db, tenant_id=w.tenant_id, subscription_id=sid, timing="immediate", actor=ACTOR, now=T0
        ),
        ["subscription.canceled", "subscription.ended"],
    ),
    Action.UNCANCEL: (
        lambda w, sid: subscriptions.uncancel_subscription(
            w.db, tenant_id=w.tenant_id, subscription_id=sid, actor=ACTOR, now=T0
        ),
        ["subscription.uncanceled"],
    ),
    Action.MARK_PAST_DUE: (
        lambda w, sid: subscriptions.mark_past_due(
            w.db, tenant_id=w.tenant_id, subscription_id=sid, actor=ACTOR, now=T0
        ),
        ["subscription.past_due"],
    ),
    Action.RECOVER: (
        lambda w, sid: subscriptions.recover(
            w.db, tenant_id=w.tenant_id, subscription_id=sid, actor=ACTOR, now=T0
        ),
        ["subscription.recovered"],
    ),
}


def _in(world: World, status: Status) -> Any:
    """A subscription in `status`, made through the services."""
    world.customer()
    plan = "trial" if status is Status.TRIALING else "basic"
    start = "2026-02-01T00:00:00Z" if status is Status.PENDING else None
    sub = world.subscribe(plan=plan, quantity=2, **({"start": start} if start else {}))
    sid = sub.subscription_id
    if status is Status.PAST_DUE:
        ACTIONS[Action.MARK_PAST_DUE][0](world, sid)
    elif status is Status.PAUSED:
        ACTIONS[Action.PAUSE][0](world, sid)
    elif status is Status.CANCELED:
        ACTIONS[Action.CANCEL][0](world, sid)
    elif status is Status.ENDED:
        ACTIONS[Action.CANCEL_NOW][0](world, sid)
    assert world.get(sub).status is status
    return sid


def _written(world: World, sid: Any) -> tuple[int, ...]:
    with world.db.connect() as conn:
        lock_version = conn.execute(
            sa.text("select lock_version from subscriptions where subscription_id = :s"), {"s": sid}
        ).scalar_one()
    return (
        world.count("subscription_history"),
        world.count("outbox_events"),
        world.count("audit_log"),
        world.count("billing_points"),
        world.count("scheduled_changes"),
        lock_version,
    )


def _events_since(world: World, seq: int) -> list[str]:
    with world.db.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "select event_type from outbox_events where tenant_id = :t and seq > :s order by seq"
                ),
                {"t": world.tenant_id, "s": seq},
            ).scalars()
        )


def _last_event_seq(world: World) -> int:
    with world.db.connect() as conn:
        return int(
            conn.execute(
                sa.text("select coalesce(max(seq), 0) from outbox_events where tenant_id = :t"),
                {"t": world.tenant_id},
            ).scalar_one()
        )


@pytest.mark.parametrize(
    ("status", "action"), list(itertools.product(Status, ACTIONS)), ids=lambda v: v.value
)
def test_state_action(world: World, status: Status, action: Action) -> None:
    sid = _in(world, status)
    operation, events = ACTIONS[action]
    before = _written(world, sid)
    event_seq = _last_event_seq(world)
    history_before = len(subscriptions.timeline(world.db, tenant_id=world.tenant_id, subscription_id=sid))
    if action in rules.ALLOWED[status]:
        operation(world, sid)
        entries = subscriptions.timeline(world.db, tenant_id=world.tenant_id, subscription_id=sid)
        assert len(entries) > history_before
        assert entries[history_before].action == action.value
        assert entries[history_before].from_status == status.value
        assert _events_since(world, event_seq) == events
    else:
        expected = rules.SubscriptionAlreadyEnded if status is Status.ENDED else rules.IllegalTransition
        with pytest.raises(expected):
            operation(world, sid)
        assert _written(world, sid) == before


def test_pending_changes_apply_before_the_start(world: World) -> None:
    sid = _in(world, Status.PENDING)
    changed = ACTIONS[Action.CHANGE][0](world, sid)
    assert changed.subscription.quantity == 3
    world.advance(dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    assert world.points(changed.subscription)[0] == ("start", "2026-02-01T00:00:00+00:00", ["93.00"])
