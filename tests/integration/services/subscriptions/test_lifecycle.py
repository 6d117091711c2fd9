"""The lifecycle through the services, on a test clock."""

from __future__ import annotations

import datetime as dt

import pytest

from accrual.domain import subscriptions as rules
from accrual.services import subscriptions
from tests.integration.services.subscriptions.conftest import ACTOR, T0, World


def d(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def test_renewals_as_the_clock_advances(world: World) -> None:
    world.customer()
    sub = world.subscribe(plan="basic", external_id="sub_1")
    assert sub.status is rules.Status.ACTIVE
    advance = world.advance(d(2026, 4, 1))
    renewals = [s.at for s in advance.steps if s.provider == "subscriptions"]
    assert renewals == [d(2026, 2, 1), d(2026, 3, 1), d(2026, 4, 1)]
    # Billing follows each point the lifecycle wrote, the start's included.
    assert [s.at for s in advance.steps if s.provider == "billing"] == [d(2026, m, 1) for m in (1, 2, 3, 4)]
    after = world.get(sub)
    assert after.current_period is not None
    assert after.current_period.start == d(2026, 4, 1)
    assert world.points(sub) == [
        ("start", "2026-01-01T00:00:00+00:00", ["31.00"]),
        ("boundary", "2026-02-01T00:00:00+00:00", ["31.00"]),
        ("boundary", "2026-03-01T00:00:00+00:00", ["31.00"]),
        ("boundary", "2026-04-01T00:00:00+00:00", ["31.00"]),
    ]
    actions = [
        e.action
        for e in subscriptions.timeline(
            world.db, tenant_id=world.tenant_id, subscription_id=sub.subscription_id
        )
    ]
    assert actions == ["create", "renew", "renew", "renew"]


def test_immediate_upgrade_is_prorated(world: World) -> None:
    world.customer()
    sub = world.subscribe(plan="basic")
    world.advance(d(2026, 1, 11))
    outcome = subscriptions.change_subscription(
        world.db,
        tenant_id=world.tenant_id,
        subscription_id=sub.subscription_id,
        spec={"plan": "premium"},
        actor=ACTOR,
        now=T0,
    )
    assert outcome.scheduled is None  # an upgrade is immediate by default
    assert outcome.subscription.plan == "premium"
    assert world.points(sub)[-1] == ("change", "2026-01-11T00:00:00+00:00", ["-21.00", "42.00"])


def test_downgrade_waits_for_the_period_end(world: World) -> None:
    world.customer()
    sub = world.subscribe(plan="premium")
    outcome = subscriptions.change_subscription(
        world.db,
        tenant_id=world.tenant_id,
        subscription_id=sub.subscription_id,
        spec={"plan": "basic"},
        actor=ACTOR,
        now=T0,
    )
    assert outcome.scheduled is not None
    assert outcome.scheduled.effective_at == d(2026, 2, 1)
    assert world.get(sub).plan == "premium"
    world.advance(d(2026, 2, 1))
    assert world.get(sub).plan == "basic"
    reason, _, amounts = world.points(sub)[-1]
    assert (reason, amounts) == ("boundary", ["31.00"])
    changes = subscriptions.list_scheduled_changes(
        world.db, tenant_id=world.tenant_id, subscription_id=sub.subscription_id, pending_only=False
    )
    assert [c.status for c in changes] == ["applied"]


def test_change_at_an_instant_is_scheduled_then_applied(world: World) -> None:
    world.customer()
    sub = world.subscribe(plan="basic", quantity=1)
    outcome = subscriptions.change_subscription(
        world.db,
        tenant_id=world.tenant_id,
        subscription_id=sub.subscription_id,
        spec={"quantity": 2, "at": "2026-01-11T00:00:00Z"},
        actor=ACTOR,
        now=T0,
    )
    assert outcome.scheduled is not None
    world.advance(d(2026, 1, 20))
    assert world.get(sub).quantity == 2
    assert world.points(sub)[-1] == ("change", "2026-01-11T00:00:00+00:00", ["-21.00", "42.00"])


def test_trial_then_paid(world: World) -> None:
    world.customer()
    sub = world.subscribe(plan="trial")
    assert sub.status is rules.Status.TRIALING
    world.advance(d(2026, 2, 1))
    after = world.get(sub)
    assert after.status is rules.Status.ACTIVE
    assert world.points(sub) == [("trial_end", "2026-01-15T00:00:00+00:00", ["20.00"])]


def test_cancel_then_end(world: World) -> None:
    world.customer()
    sub = world.subscribe(plan="arrears")
    canceled = subscriptions.cancel_subscription(
        world.db,
        tenant_id=world.tenant_id,
        subscription_id=sub.subscription_id,
        timing="period_end",
        actor=ACTOR,
        now=T0,
    )
    assert canceled.status is rules.Status.CANCELED
    uncanceled = subscriptions.uncancel_subscription(
        world.db, tenant_id=world.tenant_id, subscription_id=sub.subscription_id, actor=ACTOR, now=T0
    )
    assert uncanceled.status is rules.Status.ACTIVE
    subscriptions.cancel_subscription(
        world.db,
        tenant_id=world.tenant_id,
        subscription_id=sub.subscription_id,
        timing="period_end",
        actor=ACTOR,
        now=T0,
    )
    world.advance(d(2026, 3, 1))
    ended = world.get(sub)
    assert ended.status is rules.Status.ENDED
    assert world.points(sub) == [("end", "2026-02-01T00:00:00+00:00", ["100.00"])]
    with pytest.raises(rules.SubscriptionAlreadyEnded):
        subscriptions.pause_subscription(
            world.db, tenant_id=world.tenant_id, subscription_id=sub.subscription_id, actor=ACTOR, now=T0
        )


def test_pending_start(world: World) -> None:
    world.customer()
    sub = world.subscribe(plan="basic", start="2026-01-10T00:00:00Z")
    assert sub.status is rules.Status.PENDING
    world.advance(d(2026, 1, 15))
    assert world.get(sub).status is rules.Status.ACTIVE
    assert world.points(sub) == [("start", "2026-01-10T00:00:00+00:00", ["31.00"])]


def test_currency_must_match(world: World) -> None:
    world.customer()
    with pytest.raises(subscriptions.InvalidChange) as caught:
        world.subscribe(plan="euro")
    assert caught.value.field == "/plan"


def test_proration_by_second_is_a_tenant_setting(world: World) -> None:
    from accrual.services import tenants

    tenants.update_tenant(world.db, tenant_id=world.tenant_id, proration="second", actor=ACTOR, now=T0)
    world.customer()
    world.advance(d(2026, 1, 16, 12))  # halfway through January 16th
    sub = world.subscribe(plan="basic", billing="calendar")
    # 15.5 days of January's 31 by the second: 31.00 × 15.5/31 = 15.50 (by day it would be 16.00).
    assert world.points(sub) == [("start", "2026-01-16T12:00:00+00:00", ["15.50"])]
