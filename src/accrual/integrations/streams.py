"""Streaming intake of usage: NATS JetStream and Kafka, behind one small interface.

A stream message carries one event or a JSON array of events (the JSON API's shape) for one
tenant. The consumer stores a fetched batch through the same idempotent intake as the HTTP
API, and acknowledges the messages only after PostgreSQL has committed them: a crash between
the commit and the acknowledgement makes the stream deliver them again, and the repeat is a
duplicate that changes nothing. A message that is not an event (bad JSON, a missing field) is
published to a dead-letter subject/topic with its error and acknowledged, so it is neither
lost nor retried for ever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from accrual.domain.clock import Clock

log = structlog.get_logger("accrual.streams")

# For crash tests only: exit right after the database commit, before acknowledging.
CRASH_AFTER_COMMIT = "ACCRUAL_TEST_CRASH_AFTER_COMMIT"


@dataclasses.dataclass
class Delivery:
    """One message: its bytes, its tenant, and how to settle it with the stream."""

    data: bytes
    tenant_id: uuid.UUID | None
    reference: Any  # the stream's own message object


# Store one tenant's messages' events; return the index and error of each dead message.
Ingest = Callable[[uuid.UUID, Sequence[Delivery], dt.datetime], dict[int, str]]


@dataclasses.dataclass(frozen=True)
class Settled:
    stored: list[Delivery]
    dead: list[tuple[Delivery, str]]


def store_batch(deliveries: Sequence[Delivery], *, ingest: Ingest, clock: Clock) -> Settled:
    """Group messages by tenant and store each group; messages without a tenant are dead."""
    dead: list[tuple[Delivery, str]] = [
        (d, "no tenant for this message") for d in deliveries if d.tenant_id is None
    ]
    stored: list[Delivery] = []
    by_tenant: dict[uuid.UUID, list[Delivery]] = {}
    for delivery in deliveries:
        if delivery.tenant_id is not None:
            by_tenant.setdefault(delivery.tenant_id, []).append(delivery)
    for tenant_id, group in by_tenant.items():
        bad = ingest(tenant_id, group, clock.now())
        dead += [(group[i], error) for i, error in bad.items()]
        stored += [d for i, d in enumerate(group) if i not in bad]
    if os.environ.get(CRASH_AFTER_COMMIT):
        log.warning("crashing after commit, before acknowledging (test fault injection)")
        os._exit(17)
    return Settled(stored=stored, dead=dead)


def tenant_from_subject(subject: str, *, prefix: str) -> uuid.UUID | None:
    """`accrual.events.<tenant id>` → the tenant id."""
    if not subject.startswith(prefix):
        return None
    try:
        return uuid.UUID(subject[len(prefix) :])
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class NatsOptions:
    url: str = "nats://127.0.0.1:4222"
    stream: str = "ACCRUAL_EVENTS"
    subject_prefix: str = "accrual.events."
    durable: str = "accrual-ingest"
    dead_letter_subject: str = "accrual.events-dead"
    batch: int = 500
    fetch_timeout: float = 1.0
    ack_wait: float = 30.0
    tenant_id: uuid.UUID | None = None  # every message is this tenant's (else: from the subject)
    create_stream: bool = True


async def _ensure_stream(js: Any, options: NatsOptions) -> None:
    from nats.js.api import StreamConfig  # noqa: PLC0415 - the client is imported where it is used
    from nats.js.errors import NotFoundError  # noqa: PLC0415

    try:
        await js.stream_info(options.stream)
    except NotFoundError:
        if not options.create_stream:
            raise
        await js.add_stream(StreamConfig(name=options.stream, subjects=[f"{options.subject_prefix}>"]))


async def consume_nats(
    options: NatsOptions,
    *,
    ingest: Ingest,
    clock: Clock,
    stop: Callable[[], bool],
) -> int:
    """Consume the JetStream stream until `stop()`; return how many messages were stored."""
    import nats  # noqa: PLC0415
    from nats.js.api import AckPolicy, ConsumerConfig  # noqa: PLC0415

    nc = await nats.connect(options.url)
    stored = 0
    try:
        js = nc.jetstream()
        await _ensure_stream(js, options)
        subscription = await js.pull_subscribe(
            f"{options.subject_prefix}>",
            durable=options.durable,
            stream=options.stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=options.ack_wait),
        )
        while not stop():
            try:
                messages = await subscription.fetch(options.batch, timeout=options.fetch_timeout)
            except TimeoutError:
                # Nothing arrived in time. (The client raises its own subclass or the plain
                # asyncio one, depending on when it noticed; under load, either happens.)
                continue
            deliveries = [
                Delivery(
                    data=m.data,
                    tenant_id=options.tenant_id
                    or tenant_from_subject(m.subject, prefix=options.subject_prefix),
                    reference=m,
                )
                for m in messages
            ]
            # The database work runs off the event loop; acknowledgements wait for its commit.
            settled = await asyncio.to_thread(store_batch, deliveries, ingest=ingest, clock=clock)
            for delivery, error in settled.dead:
                await nc.publish(
                    options.dead_letter_subject,
                    delivery.data,
                    headers={"Accrual-Error": error[:512], "Accrual-Subject": delivery.reference.subject},
                )
            await asyncio.gather(
                *(d.reference.ack() for d in [*settled.stored, *(d for d, _ in settled.dead)])
            )
            stored += len(settled.stored)
    finally:
        await nc.close()
    return stored


@dataclasses.dataclass(frozen=True)
class KafkaOptions:
    bootstrap_servers: str
    topic: str
    group_id: str = "accrual-ingest"
    dead_letter_topic: str = "accrual.events-dead"
    batch: int = 500
    poll_timeout: float = 1.0
    tenant_id: uuid.UUID | None = None  # else: the message key holds the tenant id


def consume_kafka(options: KafkaOptions, *, ingest: Ingest, clock: Clock, stop: Callable[[], bool]) -> int:
    """Consume a Kafka topic until `stop()`; offsets are committed only after PostgreSQL commits."""
    from confluent_kafka import Consumer, Producer  # noqa: PLC0415

    consumer = Consumer(
        {
            "bootstrap.servers": options.bootstrap_servers,
            "group.id": options.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = Producer({"bootstrap.servers": options.bootstrap_servers})
    consumer.subscribe([options.topic])
    stored = 0
    try:
        while not stop():
            messages = [
                m for m in consumer.consume(options.batch, timeout=options.poll_timeout) if m.error() is None
            ]
            if not messages:
                continue
            deliveries = [
                Delivery(
                    data=m.value() or b"", tenant_id=options.tenant_id or _tenant_key(m.key()), reference=m
                )
                for m in messages
            ]
            settled = store_batch(deliveries, ingest=ingest, clock=clock)
            for delivery, error in settled.dead:
                producer.produce(
                    options.dead_letter_topic, delivery.data, headers={"accrual-error": error[:512]}
                )
            producer.flush()
            consumer.commit(asynchronous=False)
            stored += len(settled.stored)
    finally:
        consumer.close()
    return stored


def _tenant_key(key: bytes | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(key.decode()) if key else None
    except ValueError:
        return None
