"""The `accrual` command: serve, migrate, and operate tenants, keys, the catalog, the audit log
and test clocks. Shared plumbing (database, errors, output) is in `cli.common`."""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated, Any

import typer

from accrual.cli import (
    billing_commands,
    catalog_commands,
    ledger_commands,
    lifecycle_commands,
    serving,
    usage_commands,
    webhook_commands,
)
from accrual.cli.common import (
    EXIT_FAILED,
    JsonFlag,
    TenantOption,
    all_pages,
    cli_actor,
    command_database,
    err,
    errors_as_messages,
    out,
    parse_instant,
    parse_uuid,
    print_json,
    table,
)
from accrual.cli.settings import Settings
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.services import api_keys, audit, tenants, test_clocks
from accrual.services.registry import default_registry
from accrual.store import migrate
from accrual.store.embedded import EmbeddedPostgres

app = typer.Typer(
    name="accrual",
    help="Accrual: billing and subscriptions, the source of truth for monetization state.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tenants_app = typer.Typer(help="Tenants: the isolation boundary of all data.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of a tenant.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
clock_app = typer.Typer(help="Test clocks: simulated time.", no_args_is_help=True)
db_app = typer.Typer(help="The database behind Accrual.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="api-keys")
app.add_typer(audit_app, name="audit")
app.add_typer(clock_app, name="clock")
app.add_typer(db_app, name="db")
app.add_typer(catalog_commands.catalog_app, name="catalog")
app.add_typer(catalog_commands.plans_app, name="plans")
app.add_typer(catalog_commands.meters_app, name="meters")
app.add_typer(catalog_commands.coupons_app, name="coupons")
app.add_typer(catalog_commands.tax_rates_app, name="tax-rates")
app.add_typer(lifecycle_commands.customers_app, name="customers")
app.add_typer(lifecycle_commands.subscriptions_app, name="subscriptions")
app.add_typer(usage_commands.events_app, name="events")
app.add_typer(usage_commands.consume_app, name="consume")
app.add_typer(billing_commands.invoices_app, name="invoices")
app.command("simulate")(billing_commands.simulate)
app.command("bill")(billing_commands.bill)
app.add_typer(webhook_commands.webhooks_app, name="webhooks")
app.add_typer(ledger_commands.ledger_app, name="ledger")
app.command("relay")(webhook_commands.relay)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [ACCRUAL_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [ACCRUAL_PORT].")] = None,
    worker: Annotated[
        bool, typer.Option(help="Run the worker loop and the webhook relay in this process.")
    ] = True,
    workers: Annotated[int, typer.Option(min=1, help="HTTP worker processes (an external database).")] = 1,
) -> None:
    """Serve the API (and the worker) until Ctrl-C; migrates and creates a demo tenant on first run."""
    settings = Settings()
    with command_database(schema="migrate") as db:
        serving.serve(
            db,
            settings,
            host=host or settings.host,
            port=port or settings.port,
            run_worker=worker,
            out=out,
            workers=workers,
        )


@app.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date (safe to run any time; concurrent runs take turns)."""
    with command_database(schema="any") as db:
        before, after = migrate.upgrade(db)
    if before == after:
        out.print(f"schema is up to date at {after}")
    else:
        out.print(f"schema migrated from {before or 'nothing'} to {after}")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (for psql and friends); starts the embedded server if that is in use."""
    settings = Settings()
    if settings.database_url is not None:
        sys.stdout.write(settings.database_url + "\n")
        return
    with errors_as_messages():
        embedded = EmbeddedPostgres(settings.data_dir / "pgdata")
        sys.stdout.write(embedded.start() + "\n")
        embedded.stop()


def _tenant_dict(tenant: Any) -> dict[str, Any]:
    return {
        "id": tenant.tenant_id,
        "name": tenant.name,
        "timezone": tenant.timezone,
        "created_at": tenant.created_at,
    }


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="The tenant's display name.")],
    timezone: Annotated[str, typer.Option(help="Default IANA time zone for its customers.")] = "UTC",
    as_json: JsonFlag = False,
) -> None:
    """Create a tenant and its first admin API key (shown once)."""
    with command_database() as db:
        created = tenants.create_tenant(
            db, name=name, timezone=timezone, actor=cli_actor(), now=SYSTEM_CLOCK.now()
        )
    if as_json:
        print_json({"tenant": created.tenant.tenant_id, "api_key": created.admin_key.secret})
        return
    out.print(f"tenant [bold]{created.tenant.name}[/] created: {created.tenant.tenant_id}")
    out.print(
        f"admin API key (shown once, store it now): [bold]{created.admin_key.secret}[/]", soft_wrap=True
    )


@tenants_app.command("list")
def tenants_list(as_json: JsonFlag = False) -> None:
    """List every tenant."""
    with command_database() as db:
        items = all_pages(lambda cursor: tenants.list_tenants(db, cursor=cursor, limit=100))
    if as_json:
        print_json([_tenant_dict(t) for t in items])
        return
    table(
        "Tenants",
        ["id", "name", "timezone", "created"],
        [[str(t.tenant_id), t.name, t.timezone, t.created_at.isoformat()] for t in items],
    )


def _key_dict(key: Any) -> dict[str, Any]:
    return {
        "id": key.api_key_id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


@keys_app.command("create")
def keys_create(
    tenant: TenantOption,
    name: Annotated[str, typer.Option(help="What the key is for.")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help="admin, write, read, ingest or finance; repeat for more."),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; its secret is printed once."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        tenants.get_tenant(db, tenant_id=tenant_id)
        issued = api_keys.create_api_key(
            db, tenant_id=tenant_id, name=name, scopes=scope, actor=cli_actor(), now=SYSTEM_CLOCK.now()
        )
    if as_json:
        print_json(_key_dict(issued.key) | {"api_key": issued.secret})
        return
    out.print(f"API key {issued.key.api_key_id} ({', '.join(issued.key.scopes)}) created")
    out.print(f"secret (shown once, store it now): [bold]{issued.secret}[/]", soft_wrap=True)


@keys_app.command("list")
def keys_list(
    tenant: TenantOption,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List a tenant's API keys."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        tenants.get_tenant(db, tenant_id=tenant_id)
        items = all_pages(
            lambda cursor: api_keys.list_api_keys(
                db, tenant_id=tenant_id, include_revoked=include_revoked, cursor=cursor, limit=100
            )
        )
    if as_json:
        print_json([_key_dict(k) for k in items])
        return
    table(
        "API keys",
        ["id", "name", "prefix", "scopes", "revoked"],
        [
            [
                str(k.api_key_id),
                k.name,
                k.prefix + "…",
                ",".join(k.scopes),
                k.revoked_at.isoformat() if k.revoked_at else "",
            ]
            for k in items
        ],
    )


@keys_app.command("revoke")
def keys_revoke(
    tenant: TenantOption, api_key_id: Annotated[str, typer.Argument(help="The key's id (not its secret).")]
) -> None:
    """Revoke an API key at once."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    key_id = parse_uuid(api_key_id, what="API_KEY_ID")
    with command_database() as db:
        key = api_keys.revoke_api_key(
            db, tenant_id=tenant_id, api_key_id=key_id, actor=cli_actor(), now=SYSTEM_CLOCK.now()
        )
    out.print(f"API key {key.api_key_id} revoked at {key.revoked_at.isoformat() if key.revoked_at else '?'}")


@audit_app.command("verify")
def audit_verify(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="One tenant; default all.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Walk each tenant's hash chain and name the first record that does not match; exit 1 on a break."""
    tenant_id = parse_uuid(tenant, what="--tenant") if tenant else None
    with command_database() as db:
        reports = audit.verify_audit_chain(db, tenant_id=tenant_id)
    broken = [r for r in reports if not r.intact]
    if as_json:
        print_json(
            [
                {
                    "tenant": r.tenant_id,
                    "records_checked": r.records_checked,
                    "intact": r.intact,
                    "first_broken_seq": r.first_break.seq if r.first_break else None,
                    "reason": r.first_break.reason if r.first_break else None,
                }
                for r in reports
            ]
        )
    else:
        for r in reports:
            if r.first_break is None:
                out.print(f"tenant {r.tenant_id}: {r.records_checked} records, chain intact")
            else:
                err.print(
                    f"[bold red]tenant {r.tenant_id}: chain broken at seq {r.first_break.seq}[/]: "
                    f"{r.first_break.reason}",
                    soft_wrap=True,
                )
        if not reports:
            out.print("no audit records")
    if broken:
        raise typer.Exit(EXIT_FAILED)


def _clock_dict(clock: Any) -> dict[str, Any]:
    return {"id": clock.test_clock_id, "name": clock.name, "frozen_time": clock.frozen_time}


@clock_app.command("create")
def clock_create(
    tenant: TenantOption,
    at: Annotated[str, typer.Option("--at", help="The instant it starts at, RFC 3339.")],
    name: Annotated[str, typer.Option(help="What the clock is for.")] = "test clock",
    as_json: JsonFlag = False,
) -> None:
    """Create a test clock frozen at an instant."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    frozen = parse_instant(at, option="--at")
    with command_database() as db:
        tenants.get_tenant(db, tenant_id=tenant_id)
        clock = test_clocks.create_test_clock(
            db, tenant_id=tenant_id, name=name, frozen_time=frozen, actor=cli_actor(), now=SYSTEM_CLOCK.now()
        )
    if as_json:
        print_json(_clock_dict(clock))
        return
    out.print(f"test clock {clock.test_clock_id} at {clock.frozen_time.isoformat()}")


@clock_app.command("advance")
def clock_advance(
    tenant: TenantOption,
    test_clock_id: Annotated[str, typer.Argument(help="The test clock's id.")],
    to: Annotated[str, typer.Option("--to", help="The instant to advance to, RFC 3339.")],
    as_json: JsonFlag = False,
) -> None:
    """Advance a test clock, running everything that falls due on the way, in time order."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    clock_id = parse_uuid(test_clock_id, what="TEST_CLOCK_ID")
    target = parse_instant(to, option="--to")
    with command_database() as db:
        advance = test_clocks.advance_test_clock(
            db,
            tenant_id=tenant_id,
            test_clock_id=clock_id,
            to=target,
            registry=default_registry(),
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
        )
    if as_json:
        print_json(_clock_dict(advance.clock) | {"steps": [dataclasses.asdict(s) for s in advance.steps]})
        return
    for step in advance.steps:
        out.print(f"{step.at.isoformat()}  {step.provider}: {step.items}")
    out.print(f"test clock {advance.clock.test_clock_id} now at {advance.clock.frozen_time.isoformat()}")


@clock_app.command("list")
def clock_list(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List a tenant's test clocks."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        tenants.get_tenant(db, tenant_id=tenant_id)
        items = all_pages(
            lambda cursor: test_clocks.list_test_clocks(db, tenant_id=tenant_id, cursor=cursor, limit=100)
        )
    if as_json:
        print_json([_clock_dict(c) for c in items])
        return
    table(
        "Test clocks",
        ["id", "name", "frozen at"],
        [[str(c.test_clock_id), c.name, c.frozen_time.isoformat()] for c in items],
    )


def main() -> None:
    """Entry point of the `accrual` console script."""
    app()
