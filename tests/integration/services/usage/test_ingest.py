"""Idempotency under concurrency, the life of a subscription, and the late-event policy."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.integrations.streams import Delivery
from accrual.services import catalog, subscriptions, tenants
from accrual.services.unit_of_work import Actor
from accrual.services.usage import ingest, intake
from accrual.services.usage.ingest import Outcome
from accrual.services.usage.streaming import message_ingester
from accrual.store.database import Database
from tests.support import metered_subscription

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
ACTOR = Actor.cli("ingest")


@pytest.fixture
def tid(db: Database) -> Any:
    return metered_subscription(db, meter={"code": "calls", "aggregation": "count"}, start=T0, actor=ACTOR)[0]


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
    # The payload that won decides which repeats are duplicates and which are conflicts: the
    # even-numbered senders all sent one payload, each odd-numbered one a payload of its own.
    winner = outcomes.index(Outcome.ACCEPTED)
    for n, outcome in enumerate(outcomes):
        if n != winner:
            same = winner % 2 == 0 and n % 2 == 0
            assert outcome is (Outcome.DUPLICATE if same else Outcome.REJECTED), (winner, n, outcome)


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


def test_repeats_within_one_batch_of_an_id_stored_before(db: Database, tid: Any) -> None:
    """What was stored first stands, whatever the order of the repeats in a later batch."""
    send(db, tid, event("x", properties={"v": "A"}))
    b, b_again = send(db, tid, event("x", properties={"v": "B"}), event("x", properties={"v": "B"}))
    assert (b.outcome, b_again.outcome) == (Outcome.REJECTED, Outcome.REJECTED)
    b, a = send(db, tid, event("x", properties={"v": "B"}), event("x", properties={"v": "A"}))
    assert (b.outcome, a.outcome) == (Outcome.REJECTED, Outcome.DUPLICATE)
    assert count(db, "usage_events", tid) == 1


def test_an_event_without_a_timestamp_sent_again_later_is_a_duplicate(db: Database, tid: Any) -> None:
    """Its timestamp is its arrival; a retry arrives later, but it is the same payload."""
    undated = {"id": "u1", "subscription": "s", "meter": "calls"}
    first = ingest.ingest(
        db, tenant_id=tid, events=intake.parse_events([undated], now=T0 + dt.timedelta(hours=1)), now=T0
    )
    retry = ingest.ingest(
        db, tenant_id=tid, events=intake.parse_events([undated], now=T0 + dt.timedelta(hours=2)), now=T0
    )
    assert (first[0].outcome, retry[0].outcome) == (Outcome.ACCEPTED, Outcome.DUPLICATE)
    with db.connect() as conn:
        stored = conn.execute(
            sa.text("select ts from usage_events where tenant_id = :t"), {"t": tid}
        ).scalar_one()
    assert stored == T0 + dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("timestamp", "detail"),
    [
        ("0001-01-01T00:00:00+01:00", "not an RFC 3339 instant"),
        ("9999-12-31T23:59:59Z", "between the years 2000 and 2099"),
        ("1999-12-31T23:59:59Z", "between the years 2000 and 2099"),
    ],
)
def test_instants_out_of_any_billing_range_are_invalid_input(timestamp: str, detail: str) -> None:
    with pytest.raises(intake.InvalidBatch) as raised:
        intake.parse_events([{"id": "t", "subscription": "s", "meter": "m", "timestamp": timestamp}], now=T0)
    assert raised.value.bad[0].field == "/0/timestamp"
    assert detail in raised.value.bad[0].detail


def test_stream_messages_for_a_tenant_that_does_not_exist_are_dead_letters(db: Database) -> None:
    nobody = uuid.uuid4()
    body = b'{"id": "e", "subscription": "s", "meter": "calls"}'
    dead = message_ingester(db)(nobody, [Delivery(body, nobody, None), Delivery(body, nobody, None)], T0)
    assert sorted(dead) == [0, 1]
    assert "Tenant not found" in dead[0]


def test_a_held_event_released_into_an_invoiced_period_is_billed_late_even_under_reject(
    db: Database, tid: Any
) -> None:
    """It was accepted when it arrived (into quarantine): only arrivals are refused."""
    tenants.update_tenant(db, tenant_id=tid, late_events="reject", actor=ACTOR, now=T0)
    (held,) = send(db, tid, event("h1", at="2026-05-20T00:00:00Z", meter="searches"))
    assert (held.outcome, held.quarantined) == (Outcome.ACCEPTED, "unknown_meter")
    _close_usage(db, tid, dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    catalog.create_meter(
        db, tenant_id=tid, spec={"code": "searches", "aggregation": "count"}, actor=ACTOR, now=T0
    )
    with db.connect() as conn:
        late = conn.execute(
            sa.text("select late from usage_events where tenant_id = :t and event_id = 'h1'"), {"t": tid}
        ).scalar_one()
    assert late is True


def quarantine_events(db: Database, tid: Any) -> list[Any]:
    with db.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "select event_type, entity_type, entity_id, payload, occurred_at from outbox_events "
                    "where tenant_id = :t and event_type = 'usage.quarantined' order by seq"
                ),
                {"t": tid},
            )
        )


def test_each_event_quarantined_is_announced_once_as_it_was_sent(db: Database, tid: Any) -> None:
    results = send(
        db,
        tid,
        event("counted"),
        event("no-meter", meter="searches", properties={"region": "eu", "tokens": 1.5}),
        {"id": "no-customer", "customer": "ghost", "meter": "calls", "timestamp": "2026-05-02T00:00:00Z"},
        event("no-meter", meter="searches", properties={"region": "eu", "tokens": 1.5}),  # a repeat
    )
    assert [r.quarantined for r in results] == [None, "unknown_meter", "unknown_customer", None]
    rows = quarantine_events(db, tid)
    assert [(r.event_type, r.entity_type, r.entity_id) for r in rows] == [
        ("usage.quarantined", "usage_event", "no-meter"),
        ("usage.quarantined", "usage_event", "no-customer"),
    ]
    assert rows[0].payload == {
        "id": "no-meter",
        "meter": "searches",
        "subscription": "s",
        "customer": None,
        "timestamp": "2026-05-02T00:00:00+00:00",
        "properties": {"region": "eu", "tokens": "1.5"},  # decimals are strings, as in every payload
        "reason": "unknown_meter",
        "detail": "there is no meter 'searches'",
        "received_at": T0.isoformat(),
    }
    assert rows[1].payload["customer"] == "ghost"
    assert rows[1].payload["subscription"] is None
    assert rows[1].payload["reason"] == "unknown_customer"
    assert {r.occurred_at for r in rows} == {T0}
    # Sent again, a quarantined event is a duplicate: nothing is announced again.
    send(db, tid, event("no-meter", meter="searches", properties={"region": "eu", "tokens": 1.5}))
    assert len(quarantine_events(db, tid)) == 2


def test_a_batch_with_nothing_quarantined_writes_no_outbox_row(db: Database, tid: Any) -> None:
    with db.connect() as conn:
        before = conn.execute(sa.text("select count(*) from outbox_events where tenant_id = :t"), {"t": tid})
        written = before.scalar_one()
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        send(db, tid, event("a"), event("b"))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert not [s for s in statements if "outbox_events" in s]
    assert count(db, "outbox_events", tid) == written


def test_a_refused_late_event_is_not_announced_as_quarantined(db: Database, tid: Any) -> None:
    tenants.update_tenant(db, tenant_id=tid, late_events="reject", actor=ACTOR, now=T0)
    _close_usage(db, tid, dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    (refused,) = send(db, tid, event("l3", at="2026-05-20T00:00:00Z"))
    assert refused.outcome is Outcome.REJECTED
    assert quarantine_events(db, tid) == []
