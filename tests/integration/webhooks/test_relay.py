"""The relay against a real HTTP receiver on loopback, verified with the standardwebhooks library."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import WebhookVerificationError

from accrual.domain import webhooks as rules
from accrual.services import customers, tenants, webhooks
from accrual.services.relay import CRASH_AFTER_SEND, Relay, sign
from accrual.services.tenants import CreatedTenant
from accrual.store.database import BoundTransactions, Database
from accrual.store.schema import outbox_events, webhook_attempts, webhook_deliveries
from tests.integration.webhooks.conftest import ACTOR, ManualClock, Receiver

MakeCustomer = Callable[..., uuid.UUID]


def _deliveries(db: Database, endpoint_id: uuid.UUID) -> list[sa.Row[object]]:
    with db.connect() as conn:
        return list(
            conn.execute(
                sa.select(webhook_deliveries)
                .where(webhook_deliveries.c.endpoint_id == endpoint_id)
                .order_by(webhook_deliveries.c.seq)
            )
        )


def _endpoint(db: Database, tenant: CreatedTenant, endpoint_id: uuid.UUID) -> webhooks.store.Endpoint:
    return webhooks.get_endpoint(db, tenant_id=tenant.tenant.tenant_id, endpoint_id=endpoint_id)


def test_an_event_is_delivered_once_signed_with_the_full_state(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    make_customer: MakeCustomer,
) -> None:
    customer_id = make_customer("acme")
    relay.run_once()
    relay.run_once()

    (request,) = receiver.received
    body = request.verify(endpoint.secret)
    assert body["type"] == "customer.created"
    assert body["data"]["id"] == str(customer_id)
    assert body["data"]["external_id"] == "acme"
    assert set(body) == {"type", "timestamp", "data"}
    with db.connect() as conn:
        event_id = conn.execute(
            sa.select(outbox_events.c.event_id).where(
                outbox_events.c.entity_id == str(customer_id),
                outbox_events.c.event_type == "customer.created",
            )
        ).scalar_one()
    assert request.id == str(event_id)
    (delivery,) = _deliveries(db, endpoint.endpoint.endpoint_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 204)


def test_a_receiver_down_then_up_gets_the_event_on_the_retry(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    hooks_tenant: CreatedTenant,
    make_customer: MakeCustomer,
    clock: ManualClock,
) -> None:
    receiver.stop()
    make_customer()
    relay.run_once()
    (delivery,) = _deliveries(db, endpoint.endpoint.endpoint_id)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "refused" in delivery.last_error.lower() or "connect" in delivery.last_error.lower()
    # The second attempt is due about 5 s later (give or take a tenth), not before.
    assert dt.timedelta(seconds=4.5) <= delivery.next_attempt_at - clock.now() <= dt.timedelta(seconds=5.5)
    clock.advance(dt.timedelta(seconds=4))
    relay.run_once()
    assert _deliveries(db, endpoint.endpoint.endpoint_id)[0].attempts == 1

    receiver.start()  # same port
    clock.advance(dt.timedelta(seconds=2))
    relay.run_once()
    (request,) = receiver.received
    request.verify(endpoint.secret)
    (delivery,) = _deliveries(db, endpoint.endpoint.endpoint_id)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert _endpoint(db, hooks_tenant, endpoint.endpoint.endpoint_id).failing_since is None


def test_server_errors_then_gone_disable_the_endpoint_and_say_so(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    hooks_tenant: CreatedTenant,
    make_customer: MakeCustomer,
    clock: ManualClock,
) -> None:
    receiver.answer((500, {}, b"boom"), (503, {}, b"busy"), (410, {}, b"gone"))
    make_customer()
    for _ in range(3):
        relay.run_once()
        clock.advance(dt.timedelta(minutes=6))
    assert len(receiver.received) == 3
    assert len({r.id for r in receiver.received}) == 1  # the same webhook-id every time

    found = _endpoint(db, hooks_tenant, endpoint.endpoint.endpoint_id)
    assert (found.enabled, found.disabled_reason) == (False, "gone")
    (delivery,) = _deliveries(db, endpoint.endpoint.endpoint_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 410)
    with db.connect() as conn:
        attempts = list(
            conn.execute(
                sa.select(webhook_attempts)
                .where(webhook_attempts.c.delivery_id == delivery.delivery_id)
                .order_by(webhook_attempts.c.attempt)
            )
        )
        disabled = conn.execute(
            sa.select(outbox_events.c.payload).where(
                outbox_events.c.tenant_id == hooks_tenant.tenant.tenant_id,
                outbox_events.c.event_type == "endpoint.disabled",
            )
        ).scalar_one()
    assert [(a.status_code, a.outcome, a.response_body) for a in attempts] == [
        (500, "failed", "boom"),
        (503, "failed", "busy"),
        (410, "gone", "gone"),
    ]
    assert attempts[0].request_headers["webhook-id"] == receiver.received[0].id
    assert disabled["disabled_reason"] == "gone"
    # A disabled endpoint is sent nothing more.
    make_customer()
    relay.run_once()
    assert len(receiver.received) == 3


def test_retry_after_pushes_the_next_attempt_back(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    make_customer: MakeCustomer,
    clock: ManualClock,
) -> None:
    receiver.answer((429, {"Retry-After": "3600"}, b""))
    make_customer()
    relay.run_once()
    (delivery,) = _deliveries(db, endpoint.endpoint.endpoint_id)
    assert delivery.next_attempt_at >= clock.now() + dt.timedelta(seconds=3600)


def test_five_days_of_failures_disable_the_endpoint(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    hooks_tenant: CreatedTenant,
    make_customer: MakeCustomer,
    clock: ManualClock,
) -> None:
    receiver.answer(*[500] * 20)
    make_customer()
    relay.run_once()
    started = _endpoint(db, hooks_tenant, endpoint.endpoint.endpoint_id).failing_since
    assert started == clock.now()
    clock.advance(dt.timedelta(days=4, hours=23))
    make_customer()
    relay.run_once()
    assert _endpoint(db, hooks_tenant, endpoint.endpoint.endpoint_id).enabled
    clock.advance(dt.timedelta(hours=2))
    make_customer()
    relay.run_once()
    found = _endpoint(db, hooks_tenant, endpoint.endpoint.endpoint_id)
    assert (found.enabled, found.disabled_reason) == (False, "failing")

    # Enabling forgets the streak; waiting deliveries resume.
    receiver.script.clear()
    webhooks.set_enabled(
        db,
        tenant_id=hooks_tenant.tenant.tenant_id,
        endpoint_id=endpoint.endpoint.endpoint_id,
        enabled=True,
        actor=ACTOR,
        now=clock.now(),
    )
    clock.advance(dt.timedelta(days=2))
    relay.run_once()
    statuses = [d.status for d in _deliveries(db, endpoint.endpoint.endpoint_id)]
    assert statuses.count("succeeded") >= 2
    assert _endpoint(db, hooks_tenant, endpoint.endpoint.endpoint_id).failing_since is None


def test_a_rotated_secret_signs_alongside_the_new_one_during_the_overlap(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    hooks_tenant: CreatedTenant,
    make_customer: MakeCustomer,
    clock: ManualClock,
) -> None:
    new = webhooks.rotate_secret(
        db,
        tenant_id=hooks_tenant.tenant.tenant_id,
        endpoint_id=endpoint.endpoint.endpoint_id,
        overlap=dt.timedelta(hours=1),
        actor=ACTOR,
        now=clock.now(),
    )
    assert new != endpoint.secret
    assert new.startswith("whsec_")
    make_customer()
    relay.run_once()
    (during,) = receiver.of_type("customer.")
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    during.verify(endpoint.secret)
    during.verify(new)

    clock.advance(dt.timedelta(hours=1, seconds=1))
    make_customer()
    relay.run_once()
    after = receiver.of_type("customer.")[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        after.verify(endpoint.secret)
    # (the webhook-timestamp is an hour ahead of the real clock now, so check the signature alone)
    stamp = dt.datetime.fromtimestamp(int(after.headers["webhook-timestamp"]), dt.UTC)
    assert after.headers["webhook-signature"] == sign(
        secrets=[new], msg_id=after.id, timestamp=stamp, body=after.body
    )


def test_events_of_one_entity_wait_for_the_earlier_one_while_others_flow(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    make_customer: MakeCustomer,
    rename: Callable[[uuid.UUID, str], None],
    clock: ManualClock,
) -> None:
    stuck = make_customer("stuck")
    receiver.answer(500)  # the first delivery: stuck's creation
    relay.run_once()
    rename(stuck, "Stuck Renamed")
    other = make_customer("other")
    rename(other, "Other Renamed")
    relay.run_once()
    relay.run_once()
    seen = [(r.json()["type"], r.json()["data"]["external_id"]) for r in receiver.received]
    assert seen == [
        ("customer.created", "stuck"),
        ("customer.created", "other"),
        ("customer.updated", "other"),
    ]
    clock.advance(dt.timedelta(seconds=6))
    relay.run_once()
    relay.run_once()
    seen = [(r.json()["type"], r.json()["data"]["name"]) for r in receiver.received[3:]]
    assert seen == [("customer.created", "stuck"), ("customer.updated", "Stuck Renamed")]


def test_an_event_whose_transaction_commits_late_is_not_skipped(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    make_customer: MakeCustomer,
    clock: ManualClock,
) -> None:
    """A long transaction writes its event first (lower sequence and transaction id) and commits
    after a later one. (It is another tenant's: a tenant's audit chain serializes its own writers.)"""
    slow_tenant = tenants.create_tenant(db, name="Slow", timezone="UTC", actor=ACTOR, now=clock.now())
    slow_id = slow_tenant.tenant.tenant_id
    tenants.update_tenant(
        db, tenant_id=slow_id, webhooks={"allow_insecure": True}, actor=ACTOR, now=clock.now()
    )
    slow_endpoint = webhooks.create_endpoint(
        db, tenant_id=slow_id, url=receiver.url, actor=ACTOR, now=clock.now()
    )
    try:
        with db.engine.connect() as conn:
            long = conn.begin()
            customers.create_customer(
                BoundTransactions(conn),
                tenant_id=slow_id,
                spec={"external_id": "slow", "currency": "USD"},
                test_clock_id=None,
                actor=ACTOR,
                now=clock.now(),
            )
            make_customer("fast")  # commits while "slow" is still open
            relay.run_once()
            assert receiver.received == []  # the mark stops below the open transaction
            long.commit()
        relay.run_once()
        assert sorted(r.json()["data"]["external_id"] for r in receiver.received) == ["fast", "slow"]
    finally:
        webhooks.set_enabled(
            db,
            tenant_id=slow_id,
            endpoint_id=slow_endpoint.endpoint.endpoint_id,
            enabled=False,
            actor=ACTOR,
            now=clock.now(),
        )


def test_several_relays_deliver_each_event_once(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    make_customer: MakeCustomer,
    clock: ManualClock,
) -> None:
    from accrual.integrations.webhook_transport import HttpTransport
    from accrual.services.relay import RelaySettings

    for _ in range(40):
        make_customer()
    others = [
        Relay(db, clock=clock, transport=HttpTransport(), settings=RelaySettings(batch_size=5, concurrency=2))
        for _ in range(3)
    ]
    threads = [threading.Thread(target=r.run_once) for r in [*others, relay]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in others:
        other.run_once()
        other.close()
    ids = [r.id for r in receiver.received]
    assert len(ids) == 40
    assert len(set(ids)) == 40


def test_a_relay_killed_after_sending_sends_again_with_the_same_id(
    db: Database,
    database_url: str,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    make_customer: MakeCustomer,
    clock: ManualClock,
) -> None:
    make_customer()
    child = (
        "import sys\n"
        "from accrual.integrations.system_clock import SYSTEM_CLOCK\n"
        "from accrual.integrations.webhook_transport import HttpTransport\n"
        "from accrual.services.relay import Relay\n"
        "from accrual.store.database import Database\n"
        "db = Database(sys.argv[1], pool_size=2)\n"
        "Relay(db, clock=SYSTEM_CLOCK, transport=HttpTransport()).run_once()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, database_url],
        env={**os.environ, CRASH_AFTER_SEND: "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 87, done.stderr
    (first,) = receiver.received
    (delivery,) = _deliveries(db, endpoint.endpoint.endpoint_id)
    assert (delivery.status, delivery.attempts) == ("pending", 0)  # sent, never recorded
    relay.run_once()
    assert len(receiver.received) == 1  # leased: not sent again before the lease ends
    clock.advance(dt.timedelta(minutes=10))  # past the lease: 13 rounds of 15 s, and 30 s more
    relay.run_once()
    second = receiver.received[1]
    assert second.id == first.id
    assert second.body == first.body
    (delivery,) = _deliveries(db, endpoint.endpoint.endpoint_id)
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)


def test_event_type_filters_choose_what_an_endpoint_gets(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    hooks_tenant: CreatedTenant,
    make_customer: MakeCustomer,
    rename: Callable[[uuid.UUID, str], None],
    clock: ManualClock,
) -> None:
    webhooks.create_endpoint(
        db,
        tenant_id=hooks_tenant.tenant.tenant_id,
        url=receiver.url,
        event_types=["customer.updated"],
        actor=ACTOR,
        now=clock.now(),
    )
    rename(make_customer(), "Renamed")
    relay.run_once()
    assert receiver.types() == ["customer.updated"]


def test_redeliver_and_replay_send_again_with_the_original_id(
    db: Database,
    relay: Relay,
    receiver: Receiver,
    endpoint: webhooks.CreatedEndpoint,
    hooks_tenant: CreatedTenant,
    make_customer: MakeCustomer,
    clock: ManualClock,
) -> None:
    clock.advance(dt.timedelta(seconds=1))
    since = clock.now()
    make_customer("a")
    make_customer("b")
    relay.run_once()
    first_ids = [r.id for r in receiver.received]
    assert len(first_ids) == 2
    tenant_id = hooks_tenant.tenant.tenant_id
    made = webhooks.redeliver(
        db,
        tenant_id=tenant_id,
        event_id=uuid.UUID(first_ids[0]),
        endpoint_id=None,
        actor=ACTOR,
        now=clock.now(),
    )
    assert made == 1
    relay.run_once()
    assert receiver.received[2].id == first_ids[0]

    made = webhooks.replay(
        db,
        tenant_id=tenant_id,
        endpoint_id=endpoint.endpoint.endpoint_id,
        since=since,
        until=None,
        actor=ACTOR,
        now=clock.now(),
    )
    assert made == 2
    relay.run_once()
    assert sorted(r.id for r in receiver.received[3:]) == sorted(first_ids)  # two entities: any order
    origins = sorted(d.origin for d in _deliveries(db, endpoint.endpoint.endpoint_id))
    assert origins == ["redeliver", "relay", "relay", "replay", "replay"]


def test_the_retry_schedule_is_the_standard_one_then_gives_up() -> None:
    delivery = uuid.uuid4()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    expected = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    for attempt, seconds in enumerate(expected, start=1):
        at = rules.next_attempt_at(delivery_id=delivery, attempts=attempt, failed_at=start)
        assert at is not None
        assert seconds * 0.9 <= (at - start).total_seconds() <= seconds * 1.1
        assert at == rules.next_attempt_at(delivery_id=delivery, attempts=attempt, failed_at=start)
    assert rules.next_attempt_at(delivery_id=delivery, attempts=10, failed_at=start) is None
