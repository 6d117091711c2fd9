"""`accrual events` (list, quarantine, reprocess) and `accrual consume` (NATS JetStream, Kafka)."""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Annotated

import typer

from accrual.cli.common import (
    JsonFlag,
    TenantOption,
    command_database,
    out,
    parse_uuid,
    print_json,
    table,
)
from accrual.integrations import streams
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.services.usage import quarantine, reads
from accrual.services.usage.streaming import message_ingester

events_app = typer.Typer(
    help="Usage events: what was counted, what is held in quarantine.", no_args_is_help=True
)
consume_app = typer.Typer(help="Take usage from a stream (acknowledged after commit).", no_args_is_help=True)


@events_app.command("list")
def events_list(
    tenant: TenantOption,
    subscription: Annotated[str | None, typer.Option(help="Subscription id.")] = None,
    meter: Annotated[str | None, typer.Option()] = None,
    late: Annotated[
        bool | None, typer.Option("--late/--on-time", help="Only late events, or only on time.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The newest counted events."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        items, _ = reads.list_events(
            db,
            tenant_id=tenant_id,
            subscription_id=parse_uuid(subscription, what="--subscription") if subscription else None,
            customer_id=None,
            meter=meter,
            start=None,
            end=None,
            cursor=None,
            limit=limit,
            late=late,
        )
    if as_json:
        print_json([{"id": e.event_id, "meter": e.meter, "timestamp": e.ts, "late": e.late} for e in items])
        return
    table(
        "Events",
        ["id", "meter", "timestamp", "late"],
        [[e.event_id, e.meter, e.ts.isoformat(), "late" if e.late else ""] for e in items],
    )


@events_app.command("quarantine")
def events_quarantine(
    tenant: TenantOption,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Events held in quarantine, with why."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        items, _ = reads.list_quarantine(
            db, tenant_id=tenant_id, include_released=False, reason=None, cursor=None, limit=limit
        )
    if as_json:
        print_json(
            [{"id": e.event_id, "reason": e.reason, "detail": e.detail, "timestamp": e.ts} for e in items]
        )
        return
    table("Quarantine", ["id", "reason", "detail"], [[e.event_id, e.reason, e.detail] for e in items])


@events_app.command("reprocess")
def events_reprocess(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="One tenant; default all.")] = None,
) -> None:
    """Try every quarantined event again; count those whose customer, subscription or meter now exist."""
    tenant_id = parse_uuid(tenant, what="--tenant") if tenant else None
    with command_database() as db:
        released = quarantine.reprocess(db, tenant_id=tenant_id, now=SYSTEM_CLOCK.now())
    out.print(f"{released} quarantined events counted", highlight=False)


def _stopper() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@consume_app.command("nats")
def consume_nats(
    url: Annotated[str, typer.Option(help="NATS server.")] = "nats://127.0.0.1:4222",
    stream: Annotated[str, typer.Option(help="JetStream stream (created if missing).")] = "ACCRUAL_EVENTS",
    subject_prefix: Annotated[str, typer.Option(help="Subjects are PREFIX<tenant id>.")] = "accrual.events.",
    durable: Annotated[str, typer.Option(help="Durable consumer name.")] = "accrual-ingest",
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="All messages are this tenant's.")
    ] = None,
    ack_wait: Annotated[
        float, typer.Option(help="Seconds before an unacknowledged message is redelivered.")
    ] = 30.0,
    batch: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
    dead_letter_subject: Annotated[str, typer.Option(help="Where messages that are not events go.")] = (
        "accrual.events-dead"
    ),
) -> None:
    """Consume usage from NATS JetStream until Ctrl-C."""
    options = streams.NatsOptions(
        url=url,
        stream=stream,
        subject_prefix=subject_prefix,
        durable=durable,
        tenant_id=parse_uuid(tenant, what="--tenant") if tenant else None,
        ack_wait=ack_wait,
        batch=batch,
        dead_letter_subject=dead_letter_subject,
    )
    stop = _stopper()
    with command_database() as db:
        out.print(f"consuming {stream} ({subject_prefix}>) from {url}; Ctrl-C stops", highlight=False)
        stored = asyncio.run(
            streams.consume_nats(options, ingest=message_ingester(db), clock=SYSTEM_CLOCK, stop=stop.is_set)
        )
    out.print(f"stopped after storing {stored} messages", highlight=False)


@consume_app.command("kafka")
def consume_kafka(
    bootstrap_servers: Annotated[str, typer.Option(help="Kafka bootstrap servers.")],
    topic: Annotated[str, typer.Option()],
    group_id: Annotated[str, typer.Option()] = "accrual-ingest",
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="All messages are this tenant's.")
    ] = None,
) -> None:
    """Consume usage from a Kafka topic until Ctrl-C (message key: the tenant id)."""
    options = streams.KafkaOptions(
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        group_id=group_id,
        tenant_id=parse_uuid(tenant, what="--tenant") if tenant else None,
    )
    stop = _stopper()
    with command_database() as db:
        stored = streams.consume_kafka(
            options, ingest=message_ingester(db), clock=SYSTEM_CLOCK, stop=stop.is_set
        )
    out.print(f"stopped after storing {stored} messages", highlight=False)
