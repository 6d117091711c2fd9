"""Idempotency under concurrency, the life of a subscription, and the late-event policy."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.services import catalog, customers, subscriptions, tenants
from accrual.services.unit_of_work import Actor
from accrual.services.usage import ingest, intake
from accrual.services.usage.ingest import Outcome
from accrual.store.database import Database

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
ACTOR = Actor.cli("ingest")


@pytest.fixture
def tid(db: Database) -> Any:
    tenant_id = tenants.create_tenant(db, name="ingest", timezone="UTC", actor=ACTOR, now=T0).tenant.tenant_id
    catalog.apply_catalog(
        db,
        tenant_id=tenant_id,
        document={
            "meters": [{"code": "calls", "aggregation": "count"}],
            "plans": [
                {
                    "code": "p",
                    "currency": "USD",
                    "interval": "month",
                    "charges": [{"code": "c", "meter": "calls", "model": "per_unit", "amount": "1"}],
                }
            ],
        },
        actor=ACTOR,
        now=T0,
    )
    customers.create_customer(
        db,
        tenant_id=tenant_id,
        spec={"external_id": "c", "currency": "USD"},
        test_clock_id=None,
        actor=ACTOR,
        now=T0,
    )
    subscriptions.create_subscription(
        db,
        tenant_id=tenant_id,
        spec={"customer": "c", "plan": "p", "external_id": "s", "start": T0.isoformat()},
        actor=ACTOR,
        now=T0,
    )
    return tenant_id


def send(db: Database, tid: Any, *events: dict[str, Any]) -> list[ingest.Result]:
    return ingest.ingest(db, tenant_id=tid, events=intake.parse_events(list(events), now=T0), now=T0)


def event(event_id: str, at: str = "2026-05-02T00:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "subscription": "s", "meter": "calls", "timestamp": at} | extra


def count(db: Database, table: str, tid: Any) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                sa.text(f"select count(*) from {table} where tenant_id = :t"), {"t": tid}
            ).scalar_one()
        )


def test_twenty_connections_racing_on_one_id_store_one_event(db: Database, tid: Any) -> None:
    def one(n: int) -> Outcome:
        payload = event("raced") if n % 2 == 0 else event("raced", properties={"n": n})
        return send(db, tid, payload)[0].outcome

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(one, range(20)))
    assert outcomes.count(Outcome.ACCEPTED) == 1
    assert count(db, "usage_events", tid) == 1
    assert count(db, "usage_event_ids", tid) == 1
    # The payload that won decides which repeats are duplicates and which are conflicts.
    assert set(outcomes) <= {Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.REJECTED}
    assert outcomes.count(Outcome.DUPLICATE) + outcomes.count(Outcome.REJECTED) == 19


def test_repeats_within_one_batch(db: Database, tid: Any) -> None:
    results = send(db, tid, event("x"), event("x"), event("x", properties={"k": 1}))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.REJECTED]


def test_events_outside_the_subscriptions_life_are_quarantined(db: Database, tid: Any) -> None:
    (before,) = send(db, tid, event("early", at="2026-04-30T23:59:59Z"))
    assert before.quarantined == "before_start"
    sub = subscriptions.get_subscription(db, tenant_id=tid, external_id="s")
    subscriptions.cancel_subscription(
        db,
        tenant_id=tid,
        subscription_id=sub.subscription_id,
        timing="immediate",
        actor=ACTOR,
        now=T0 + dt.timedelta(days=3),
    )
    after, inside = send(
        db, tid, event("late", at="2026-05-05T00:00:00Z"), event("ok", at="2026-05-03T00:00:00Z")
    )
    assert after.quarantined == "after_end"
    assert inside.quarantined is None


def _close_usage(db: Database, tid: Any, until: dt.datetime) -> None:
    # What billing does when it has invoiced a period's usage (issue 7 sets this itself).
    with db.transaction() as conn:
        conn.execute(
            sa.text("update subscriptions set usage_closed_until = :u where tenant_id = :t"),
            {"u": until, "t": tid},
        )


def test_late_events_are_flagged_for_the_next_invoice(db: Database, tid: Any) -> None:
    _close_usage(db, tid, dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    late, current = send(
        db, tid, event("l1", at="2026-05-20T00:00:00Z"), event("c1", at="2026-06-02T00:00:00Z")
    )
    assert (late.outcome, late.late) == (Outcome.ACCEPTED, True)
    assert (current.outcome, current.late) == (Outcome.ACCEPTED, False)


def test_late_events_are_refused_under_the_reject_policy(db: Database, tid: Any) -> None:
    tenants.update_tenant(db, tenant_id=tid, late_events="reject", actor=ACTOR, now=T0)
    _close_usage(db, tid, dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    (refused,) = send(db, tid, event("l2", at="2026-05-20T00:00:00Z"))
    assert refused.outcome is Outcome.REJECTED
    assert "already been invoiced" in (refused.error or "")
    (again,) = send(db, tid, event("l2", at="2026-05-20T00:00:00Z"))
    assert again.outcome is Outcome.REJECTED  # the refusal stands, like any first answer
    assert count(db, "usage_events", tid) == 0
