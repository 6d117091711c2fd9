"""`accrual relay` and `accrual webhooks ...`: webhook endpoints, deliveries, replay."""

from __future__ import annotations

import datetime as dt
import signal
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from accrual.cli.common import (
    JsonFlag,
    TenantOption,
    all_pages,
    cli_actor,
    command_database,
    out,
    parse_instant,
    parse_uuid,
    print_json,
    table,
)
from accrual.cli.serving import build_relay
from accrual.cli.settings import Settings
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.services import webhooks

T = TypeVar("T")

webhooks_app = typer.Typer(
    help="Webhook endpoints, their deliveries, redelivery and replay.", no_args_is_help=True
)


def relay(
    once: Annotated[bool, typer.Option(help="One pass (hand on, deliver what is due), then exit.")] = False,
) -> None:
    """Deliver webhooks until Ctrl-C (several relays may run side by side)."""
    settings = Settings()
    with command_database() as db:
        instance, transport = build_relay(db, settings)
        try:
            if once:
                attempted = instance.run_once()
                out.print(f"{attempted} delivery attempts", highlight=False)
                return
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            out.print("relaying webhooks; Ctrl-C stops", highlight=False)
            instance.run(stop)
        finally:
            instance.close()
            transport.close()


def _endpoint_dict(e: Any) -> dict[str, Any]:
    return {"id": str(e.endpoint_id), **{k: v for k, v in e.snapshot().items() if k != "endpoint_id"}}


@webhooks_app.command("create")
def webhooks_create(
    tenant: TenantOption,
    url: Annotated[str, typer.Argument(help="https URL that receives the events.")],
    event_type: Annotated[
        list[str] | None, typer.Option("--event-type", help="A type, entity.* or * (repeatable); none: all.")
    ] = None,
    description: Annotated[str, typer.Option()] = "",
    as_json: JsonFlag = False,
) -> None:
    """Register an endpoint; prints its signing secret."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        created = webhooks.create_endpoint(
            db,
            tenant_id=tenant_id,
            url=url,
            event_types=event_type,
            description=description,
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
        )
    if as_json:
        print_json({**_endpoint_dict(created.endpoint), "secret": created.secret})
    else:
        out.print(f"endpoint {created.endpoint.endpoint_id}\nsecret {created.secret}", highlight=False)


@webhooks_app.command("list")
def webhooks_list(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """The tenant's endpoints."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        found = all_pages(lambda c: webhooks.list_endpoints(db, tenant_id=tenant_id, cursor=c, limit=100))
    if as_json:
        print_json([_endpoint_dict(e) for e in found])
        return
    table(
        "Webhook endpoints",
        ["id", "url", "event types", "enabled", "failing since"],
        [
            [
                str(e.endpoint_id),
                e.url,
                ", ".join(e.event_types) or "*",
                "yes" if e.enabled else f"no ({e.disabled_reason})",
                e.failing_since.isoformat() if e.failing_since else "",
            ]
            for e in found
        ],
    )


def _on_endpoint(tenant: str, endpoint: str, change: Callable[..., T], **arguments: Any) -> T:
    """Run a change of one endpoint (`webhooks.set_enabled`, `rotate_secret`, `replay`) as the CLI user."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        return change(
            db,
            tenant_id=tenant_id,
            endpoint_id=parse_uuid(endpoint, what="ENDPOINT"),
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
            **arguments,
        )


def _set_enabled(tenant: str, endpoint: str, *, enabled: bool) -> None:
    found = _on_endpoint(tenant, endpoint, webhooks.set_enabled, enabled=enabled)
    out.print(f"endpoint {found.endpoint_id} {'enabled' if found.enabled else 'disabled'}", highlight=False)


@webhooks_app.command("disable")
def webhooks_disable(tenant: TenantOption, endpoint: Annotated[str, typer.Argument()]) -> None:
    """Stop deliveries to an endpoint (they wait until it is enabled)."""
    _set_enabled(tenant, endpoint, enabled=False)


@webhooks_app.command("enable")
def webhooks_enable(tenant: TenantOption, endpoint: Annotated[str, typer.Argument()]) -> None:
    """Resume deliveries to an endpoint."""
    _set_enabled(tenant, endpoint, enabled=True)


@webhooks_app.command("rotate-secret")
def webhooks_rotate(
    tenant: TenantOption,
    endpoint: Annotated[str, typer.Argument()],
    overlap_seconds: Annotated[int, typer.Option(help="How long the old secret keeps signing.")] = 86400,
) -> None:
    """Give an endpoint a new signing secret; prints it."""
    secret = _on_endpoint(
        tenant, endpoint, webhooks.rotate_secret, overlap=dt.timedelta(seconds=overlap_seconds)
    )
    out.print(f"secret {secret}", highlight=False)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    tenant: TenantOption,
    endpoint: Annotated[str, typer.Argument()],
    status: Annotated[str | None, typer.Option(help="pending, succeeded or failed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """An endpoint's latest deliveries with their attempts."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        page = webhooks.list_deliveries(
            db,
            tenant_id=tenant_id,
            endpoint_id=parse_uuid(endpoint, what="ENDPOINT"),
            status=status,
            cursor=None,
            limit=limit,
        )
    rows = [
        {
            "id": str(d.row.delivery_id),
            "event_id": str(d.row.event_id),
            "event_type": d.row.event_type,
            "status": d.row.status,
            "origin": d.row.origin,
            "attempts": [
                {"at": a.attempted_at.isoformat(), "status_code": a.status_code, "error": a.error}
                for a in d.attempts
            ],
        }
        for d in page.items
    ]
    if as_json:
        print_json(rows)
        return
    table(
        "Deliveries",
        ["event", "type", "status", "attempts", "last"],
        [
            [
                r["event_id"],
                r["event_type"],
                r["status"],
                str(len(r["attempts"])),
                str(r["attempts"][-1]["status_code"] or r["attempts"][-1]["error"]) if r["attempts"] else "",
            ]
            for r in rows
        ],
    )


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    tenant: TenantOption,
    event: Annotated[str, typer.Argument(help="The event id (the webhook-id).")],
    endpoint: Annotated[str | None, typer.Option(help="Only to this endpoint.")] = None,
) -> None:
    """Send an event again with its original webhook-id."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        made = webhooks.redeliver(
            db,
            tenant_id=tenant_id,
            event_id=parse_uuid(event, what="EVENT"),
            endpoint_id=parse_uuid(endpoint, what="--endpoint") if endpoint else None,
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
        )
    out.print(f"{made} deliveries queued", highlight=False)


@webhooks_app.command("replay")
def webhooks_replay(
    tenant: TenantOption,
    endpoint: Annotated[str, typer.Argument()],
    since: Annotated[str, typer.Option(help="RFC 3339 instant.")],
    until: Annotated[str | None, typer.Option(help="RFC 3339 instant (exclusive).")] = None,
) -> None:
    """Send again every event the endpoint takes that occurred since an instant."""
    made = _on_endpoint(
        tenant,
        endpoint,
        webhooks.replay,
        since=parse_instant(since, option="--since"),
        until=parse_instant(until, option="--until") if until else None,
    )
    out.print(f"{made} deliveries queued", highlight=False)
