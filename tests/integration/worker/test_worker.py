"""The worker follows the real clock through the same services as a test clock."""

from __future__ import annotations

import datetime as dt

from accrual.domain.clock import FixedClock
from accrual.services import catalog, customers, subscriptions
from accrual.services.registry import default_registry
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database
from accrual.worker.loop import Worker

ACTOR = Actor.cli("tests")


def test_a_backdated_subscription_is_caught_up_by_the_worker(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    plan = {
        "code": "weekly",
        "currency": "USD",
        "interval": "week",
        "charges": [{"code": "base", "model": "flat", "amount": "7"}],
    }
    catalog.apply_catalog(db, tenant_id=tid, document={"plans": [plan]}, actor=ACTOR, now=now)
    customers.create_customer(
        db,
        tenant_id=tid,
        spec={"external_id": "real", "currency": "USD"},
        test_clock_id=None,
        actor=ACTOR,
        now=now,
    )
    start = now - dt.timedelta(days=20)
    sub = subscriptions.create_subscription(
        db,
        tenant_id=tid,
        spec={"customer": "real", "plan": "weekly", "start": start.isoformat()},
        actor=ACTOR,
        now=now,
    )
    assert sub.current_period is not None
    assert sub.current_period.start == start  # backdated: it starts in the past...
    worker = Worker(db, clock=FixedClock(now), registry=default_registry())
    worker.tick()
    caught_up = subscriptions.get_subscription(db, tenant_id=tid, subscription_id=sub.subscription_id)
    assert caught_up.current_period is not None
    assert caught_up.current_period.start == start + dt.timedelta(days=14)  # ...and is billed up to now
    points = subscriptions.billing_points(db, tenant_id=tid, subscription_id=sub.subscription_id)
    assert [p.at for p in points] == [start, start + dt.timedelta(days=7), start + dt.timedelta(days=14)]
    worker.tick()  # nothing more is due
    assert len(subscriptions.billing_points(db, tenant_id=tid, subscription_id=sub.subscription_id)) == 3
