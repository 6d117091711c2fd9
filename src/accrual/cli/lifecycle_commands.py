"""`accrual customers` and `accrual subscriptions`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import typer

from accrual.cli.common import (
    JsonFlag,
    TenantOption,
    all_pages,
    cli_actor,
    command_database,
    fail,
    out,
    parse_uuid,
    print_json,
    table,
)
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.services import customers, subscriptions
from accrual.store.database import Database

customers_app = typer.Typer(help="Customers.", no_args_is_help=True)
subscriptions_app = typer.Typer(help="Subscriptions and their lifecycle.", no_args_is_help=True)


def _json_option(value: str | None, *, option: str) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        fail(f"{option}: not JSON ({exc})")
    if not isinstance(parsed, dict):
        fail(f"{option}: expected a JSON object")
    return parsed


@customers_app.command("create")
def customers_create(
    tenant: TenantOption,
    external_id: Annotated[str, typer.Argument(help="Your id for the customer.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 currency.")],
    name: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option()] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone; default the tenant's.")] = None,
    tax_rate: Annotated[
        list[str] | None, typer.Option("--tax-rate", help="Tax rate code; repeat for more.")
    ] = None,
    test_clock: Annotated[str | None, typer.Option(help="Put the customer on this test clock.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a customer."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    optional = {"name": name, "email": email, "timezone": timezone, "tax_rates": tax_rate}
    spec: dict[str, Any] = {"external_id": external_id, "currency": currency} | {
        key: value for key, value in optional.items() if value
    }
    clock_id = parse_uuid(test_clock, what="--test-clock") if test_clock else None
    with command_database() as db:
        view = customers.create_customer(
            db,
            tenant_id=tenant_id,
            spec=spec,
            test_clock_id=clock_id,
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
        )
    if as_json:
        print_json({"id": view.customer_id, **view.definition.to_spec()})
        return
    out.print(f"customer {view.definition.external_id} created: {view.customer_id}", highlight=False)


@customers_app.command("list")
def customers_list(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List customers."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        items = all_pages(
            lambda cursor: customers.list_customers(
                db, tenant_id=tenant_id, test_clock_id=None, cursor=cursor, limit=100
            )
        )
    if as_json:
        print_json([{"id": c.customer_id, **c.definition.to_spec()} for c in items])
        return
    table(
        "Customers",
        ["id", "external id", "name", "currency", "time zone"],
        [
            [
                str(c.customer_id),
                c.definition.external_id,
                c.definition.name,
                c.definition.currency.code,
                c.definition.timezone or "",
            ]
            for c in items
        ],
    )


def _customer_ref(db: Database, tenant_id: uuid.UUID, ref: str) -> customers.CustomerView:
    """A customer named by its id or its external id."""
    try:
        return customers.get_customer(db, tenant_id=tenant_id, customer_id=uuid.UUID(ref))
    except ValueError:
        return customers.get_customer(db, tenant_id=tenant_id, external_id=ref)


@customers_app.command("show")
def customers_show(
    tenant: TenantOption,
    customer: Annotated[str, typer.Argument(help="Id or external id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show a customer."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        view = _customer_ref(db, tenant_id, customer)
    if as_json:
        print_json(view.snapshot())
        return
    spec = view.definition.to_spec()
    out.print(
        "\n".join(f"{key}: {value}" for key, value in spec.items() if value not in (None, [], {})),
        highlight=False,
    )


@customers_app.command("update")
def customers_update(
    tenant: TenantOption,
    customer: Annotated[str, typer.Argument(help="Id or external id.")],
    changes: Annotated[str, typer.Option("--set", help='Fields as JSON: {"email": "ap@acme.test"}.')],
    as_json: JsonFlag = False,
) -> None:
    """Update a customer's details."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        view = customers.update_customer(
            db,
            tenant_id=tenant_id,
            customer_id=_customer_ref(db, tenant_id, customer).customer_id,
            changes=_json_option(changes, option="--set"),
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
        )
    if as_json:
        print_json(view.snapshot())
        return
    out.print(f"customer {view.definition.external_id} updated", highlight=False)


def _subscription_ref(db: Database, tenant_id: uuid.UUID, ref: str) -> uuid.UUID:
    """A subscription named by its id or its external id."""
    try:
        return uuid.UUID(ref)
    except ValueError:
        return subscriptions.get_subscription(db, tenant_id=tenant_id, external_id=ref).subscription_id


def _show(view: subscriptions.SubscriptionView, as_json: bool) -> None:
    if as_json:
        print_json(view.snapshot())
        return
    period = (
        f"{view.current_period.start.isoformat()} → {view.current_period.end.isoformat()}"
        if view.current_period
        else "-"
    )
    out.print(
        f"subscription {view.external_id or view.subscription_id}: {view.status.value}, "
        f"{view.plan} v{view.plan_version} × {view.quantity}, period {period}",
        highlight=False,
    )


@subscriptions_app.command("create")
def subscriptions_create(
    tenant: TenantOption,
    customer: Annotated[str, typer.Option(help="The customer's external id.")],
    plan: Annotated[str, typer.Option(help="The plan's code.")],
    external_id: Annotated[str | None, typer.Option(help="Your id for the subscription.")] = None,
    quantity: Annotated[int, typer.Option()] = 1,
    billing: Annotated[str, typer.Option(help="anniversary or calendar.")] = "anniversary",
    start: Annotated[str | None, typer.Option(help="RFC 3339; default now.")] = None,
    coupon: Annotated[str | None, typer.Option()] = None,
    extra: Annotated[
        str | None, typer.Option(help="More fields as JSON (trial_days, anchor, metadata, ...).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Subscribe a customer to a plan."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    optional = {"external_id": external_id, "start": start, "coupon": coupon}
    spec: dict[str, Any] = {"customer": customer, "plan": plan, "quantity": quantity, "billing": billing}
    spec |= {key: value for key, value in optional.items() if value is not None}
    spec |= _json_option(extra, option="--extra")
    with command_database() as db:
        view = subscriptions.create_subscription(
            db, tenant_id=tenant_id, spec=spec, actor=cli_actor(), now=SYSTEM_CLOCK.now()
        )
    _show(view, as_json)


@subscriptions_app.command("list")
def subscriptions_list(
    tenant: TenantOption,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List subscriptions, newest first."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        items = all_pages(
            lambda cursor: subscriptions.list_subscriptions(
                db, tenant_id=tenant_id, customer_id=None, status=status, cursor=cursor, limit=100
            )
        )
    if as_json:
        print_json([v.snapshot() for v in items])
        return
    table(
        "Subscriptions",
        ["id", "external id", "customer", "plan", "qty", "status", "period end"],
        [
            [
                str(v.subscription_id),
                v.external_id or "",
                v.customer,
                f"{v.plan} v{v.plan_version}",
                str(v.quantity),
                v.status.value,
                v.current_period.end.isoformat() if v.current_period else "",
            ]
            for v in items
        ],
    )


@subscriptions_app.command("show")
def subscriptions_show(
    tenant: TenantOption,
    subscription: Annotated[str, typer.Argument(help="Id or external id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show a subscription."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        view = subscriptions.get_subscription(
            db, tenant_id=tenant_id, subscription_id=_subscription_ref(db, tenant_id, subscription)
        )
    _show(view, as_json)


@subscriptions_app.command("timeline")
def subscriptions_timeline(
    tenant: TenantOption,
    subscription: Annotated[str, typer.Argument(help="Id or external id.")],
    as_json: JsonFlag = False,
) -> None:
    """Every transition of a subscription, with its reason."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        entries = subscriptions.timeline(
            db, tenant_id=tenant_id, subscription_id=_subscription_ref(db, tenant_id, subscription)
        )
    if as_json:
        print_json(
            [
                {
                    "seq": e.seq,
                    "action": e.action,
                    "at": e.at,
                    "from": e.from_status,
                    "to": e.to_status,
                    "reason": e.reason,
                }
                for e in entries
            ]
        )
        return
    table(
        "Timeline",
        ["at", "action", "from", "to", "reason"],
        [[e.at.isoformat(), e.action, e.from_status or "", e.to_status, e.reason] for e in entries],
    )


def _lifecycle(
    action: Callable[..., subscriptions.SubscriptionView],
    tenant: str,
    subscription: str,
    as_json: bool,
    **extra: Any,
) -> None:
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        view = action(
            db,
            tenant_id=tenant_id,
            subscription_id=_subscription_ref(db, tenant_id, subscription),
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
            **extra,
        )
    _show(view, as_json)


SubscriptionArg = Annotated[str, typer.Argument(help="Id or external id.")]


@subscriptions_app.command("pause")
def subscriptions_pause(
    tenant: TenantOption, subscription: SubscriptionArg, as_json: JsonFlag = False
) -> None:
    """Pause now: no fees until resumed."""
    _lifecycle(subscriptions.pause_subscription, tenant, subscription, as_json)


@subscriptions_app.command("resume")
def subscriptions_resume(
    tenant: TenantOption, subscription: SubscriptionArg, as_json: JsonFlag = False
) -> None:
    """Resume a paused subscription."""
    _lifecycle(subscriptions.resume_subscription, tenant, subscription, as_json)


@subscriptions_app.command("cancel")
def subscriptions_cancel(
    tenant: TenantOption,
    subscription: SubscriptionArg,
    immediately: Annotated[bool, typer.Option("--now", help="End it now (default: at period end).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel at period end, or now."""
    timing = "immediate" if immediately else "period_end"
    _lifecycle(subscriptions.cancel_subscription, tenant, subscription, as_json, timing=timing)


@subscriptions_app.command("update")
def subscriptions_update(
    tenant: TenantOption,
    subscription: SubscriptionArg,
    changes: Annotated[str, typer.Option("--set", help='Fields as JSON: {"metadata": {"crm": "42"}}.')],
    as_json: JsonFlag = False,
) -> None:
    """Update a subscription's metadata or trial-end behavior."""
    _lifecycle(
        subscriptions.update_subscription,
        tenant,
        subscription,
        as_json,
        changes=_json_option(changes, option="--set"),
    )


@subscriptions_app.command("uncancel")
def subscriptions_uncancel(
    tenant: TenantOption, subscription: SubscriptionArg, as_json: JsonFlag = False
) -> None:
    """Take back a cancellation at period end."""
    _lifecycle(subscriptions.uncancel_subscription, tenant, subscription, as_json)


@subscriptions_app.command("change")
def subscriptions_change(
    tenant: TenantOption,
    subscription: SubscriptionArg,
    plan: Annotated[str | None, typer.Option()] = None,
    plan_version: Annotated[int | None, typer.Option()] = None,
    quantity: Annotated[int | None, typer.Option()] = None,
    timing: Annotated[
        str | None, typer.Option(help="immediate or period_end (default by upgrade/downgrade).")
    ] = None,
    at: Annotated[str | None, typer.Option(help="Apply at this RFC 3339 instant instead.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change plan, plan version or quantity."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    spec = {
        k: v
        for k, v in (
            ("plan", plan),
            ("plan_version", plan_version),
            ("quantity", quantity),
            ("timing", timing),
            ("at", at),
        )
        if v is not None
    }
    with command_database() as db:
        outcome = subscriptions.change_subscription(
            db,
            tenant_id=tenant_id,
            subscription_id=_subscription_ref(db, tenant_id, subscription),
            spec=spec,
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
        )
    _show(outcome.subscription, as_json)
    if outcome.scheduled is not None and not as_json:
        out.print(f"scheduled for {outcome.scheduled.effective_at.isoformat()}", highlight=False)
