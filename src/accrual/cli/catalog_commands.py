"""`accrual catalog`, `accrual plans`, `accrual meters`, `accrual coupons`, `accrual tax-rates`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from accrual.cli import documents
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
from accrual.domain.errors import AccrualError
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.services import catalog
from accrual.store.pagination import Page

catalog_app = typer.Typer(help="The catalog as a file: apply one (idempotently) or export the current one.")
plans_app = typer.Typer(help="Plans and their versions.", no_args_is_help=True)
meters_app = typer.Typer(help="Meters.", no_args_is_help=True)
coupons_app = typer.Typer(help="Coupons.", no_args_is_help=True)
tax_rates_app = typer.Typer(help="Tax rates.", no_args_is_help=True)


@catalog_app.command("apply")
def catalog_apply(
    file: Annotated[
        Path, typer.Argument(help="A scenario file (its catalog: section is used) or a catalog file.")
    ],
    tenant: TenantOption,
    as_json: JsonFlag = False,
) -> None:
    """Make the catalog match FILE: create what is new, version plans whose terms changed, leave the rest.

    Applying the same file twice changes nothing. Nothing is written unless the whole file is valid.
    """
    tenant_id = parse_uuid(tenant, what="--tenant")
    try:
        document = documents.load(file)
    except documents.DocumentError as exc:
        fail(str(exc))
    data = document.data
    if not isinstance(data, dict):
        fail(f"{file}: expected a mapping with a catalog: section")
    section, pointer = (data["catalog"], "/catalog") if "catalog" in data else (data, "")
    if not isinstance(section, dict):
        fail(f"{document.where(pointer)}: the catalog must be a mapping")
    with command_database() as db:
        try:
            results = catalog.apply_catalog(
                db,
                tenant_id=tenant_id,
                document=section,
                pointer=pointer,
                actor=cli_actor(),
                now=SYSTEM_CLOCK.now(),
            )
        except AccrualError as exc:
            where = document.where(exc.field)
            field = f" ({exc.field})" if exc.field else ""
            fail(f"{where}: {exc.detail}{field}")
    if as_json:
        print_json([{"kind": r.kind, "code": r.code, "outcome": r.outcome} for r in results])
        return
    for r in results:
        out.print(f"{r.kind:<9} {r.code:<24} {r.outcome}", highlight=False)
    changed = sum(r.outcome != "unchanged" for r in results)
    out.print(f"{len(results)} objects, {changed} changed", highlight=False)


def _current_terms(plan: catalog.PlanView) -> dict[str, Any] | None:
    version = plan.current or plan.open_version
    return version.row.terms_spec() if version is not None else None


@catalog_app.command("export")
def catalog_export(tenant: TenantOption) -> None:
    """Print the catalog as YAML that `catalog apply` accepts (plans at their newest published terms)."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:

        def every(list_fn: Callable[..., Page[Any]]) -> list[Any]:
            return all_pages(
                lambda cursor: list_fn(
                    db, tenant_id=tenant_id, include_archived=False, cursor=cursor, limit=100
                )
            )

        meter_views = every(catalog.list_meters)
        tax_views = every(catalog.list_tax_rates)
        product_views = every(catalog.list_products)
        plan_views = every(catalog.list_plans)
        coupon_views = every(catalog.list_coupons)
    plans_out = []
    for plan in plan_views:
        terms = _current_terms(plan)
        if terms is None:
            continue
        spec = {"code": plan.code, "name": plan.name, "currency": plan.currency, **terms}
        if plan.description:
            spec["description"] = plan.description
        if plan.product:
            spec["product"] = plan.product
        plans_out.append(spec)
    document = {
        "catalog": {
            "meters": [m.definition.to_spec() for m in meter_views],
            "taxes": [t.tax_rate.to_spec() for t in tax_views],
            "products": [
                {"code": p.code, "name": p.name, "description": p.description} for p in product_views
            ],
            "plans": plans_out,
            "coupons": [c.coupon.to_spec() for c in coupon_views],
        }
    }
    out.file.write(yaml.safe_dump(_plain(document), sort_keys=False, allow_unicode=True))


def _plain(value: Any) -> Any:
    """Drop empty values so the file reads like one a person wrote."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- plans ---------------------------------------------------------------------------------


@plans_app.command("list")
def plans_list(
    tenant: TenantOption, include_archived: Annotated[bool, typer.Option("--all")] = False
) -> None:
    """List plans with their current and open versions."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        items = all_pages(
            lambda cursor: catalog.list_plans(
                db, tenant_id=tenant_id, include_archived=include_archived, cursor=cursor, limit=100
            )
        )
    table(
        "Plans",
        ["code", "name", "currency", "current", "open", "archived"],
        [
            [
                p.code,
                p.name,
                p.currency,
                f"v{p.current.row.version}" if p.current else "",
                f"v{p.open_version.row.version} {p.open_version.status.value}" if p.open_version else "",
                "yes" if p.archived_at else "",
            ]
            for p in items
        ],
    )


@plans_app.command("show")
def plans_show(
    tenant: TenantOption,
    code: str,
    version: Annotated[int | None, typer.Option(help="A version; default the current one.")] = None,
) -> None:
    """Print a plan version's terms as YAML."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        plan = catalog.get_plan(db, tenant_id=tenant_id, code=code)
        view = (
            catalog.get_plan_version(db, tenant_id=tenant_id, code=code, version=version)
            if version is not None
            else plan.current or plan.open_version
        )
    if view is None:
        fail(f"plan {code!r} has no versions")
    header = {
        "plan": code,
        "currency": plan.currency,
        "version": view.row.version,
        "status": view.status.value,
    }
    out.file.write(
        yaml.safe_dump(_plain(header | view.row.terms_spec()), sort_keys=False, allow_unicode=True)
    )


def _version_command(
    action: Callable[..., catalog.VersionView], tenant: str, code: str, version: int, **extra: Any
) -> None:
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        view = action(
            db,
            tenant_id=tenant_id,
            code=code,
            version=version,
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
            **extra,
        )
    out.print(f"plan {code} version {view.row.version}: {view.status.value}", highlight=False)


@plans_app.command("publish")
def plans_publish(tenant: TenantOption, code: str, version: int) -> None:
    """Publish a draft version (under maker-checker: submit it for approval)."""
    _version_command(catalog.publish_version, tenant, code, version)


@plans_app.command("approve")
def plans_approve(tenant: TenantOption, code: str, version: int) -> None:
    """Approve a version awaiting approval (not as the person who submitted it)."""
    _version_command(catalog.approve_version, tenant, code, version)


@plans_app.command("reject")
def plans_reject(
    tenant: TenantOption, code: str, version: int, reason: Annotated[str, typer.Option(help="Why.")]
) -> None:
    """Send a version awaiting approval back to draft."""
    _version_command(catalog.reject_version, tenant, code, version, reason=reason)


def _archive_command(action: Callable[..., Any], tenant: str, code: str, what: str) -> None:
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        action(db, tenant_id=tenant_id, code=code, actor=cli_actor(), now=SYSTEM_CLOCK.now())
    out.print(f"{what} {code} archived", highlight=False)


@plans_app.command("archive")
def plans_archive(tenant: TenantOption, code: str) -> None:
    """Archive a plan: existing subscriptions keep it; new ones cannot choose it."""
    _archive_command(catalog.archive_plan, tenant, code, "plan")


# --- meters, coupons, tax rates ------------------------------------------------------------


@meters_app.command("list")
def meters_list(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List meters."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        items = all_pages(
            lambda cursor: catalog.list_meters(
                db, tenant_id=tenant_id, include_archived=False, cursor=cursor, limit=100
            )
        )
    if as_json:
        print_json([m.definition.to_spec() for m in items])
        return
    table(
        "Meters",
        ["code", "name", "aggregation", "field"],
        [
            [m.definition.code, m.definition.name, m.definition.aggregation.value, m.definition.field or ""]
            for m in items
        ],
    )


@meters_app.command("archive")
def meters_archive(tenant: TenantOption, code: str) -> None:
    """Archive a meter: plan versions using it keep it; new drafts cannot."""
    _archive_command(catalog.archive_meter, tenant, code, "meter")


@coupons_app.command("list")
def coupons_list(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List coupons."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        items = all_pages(
            lambda cursor: catalog.list_coupons(
                db, tenant_id=tenant_id, include_archived=False, cursor=cursor, limit=100
            )
        )
    if as_json:
        print_json([c.coupon.to_spec() for c in items])
        return
    table(
        "Coupons",
        ["code", "kind", "value", "duration"],
        [[c.coupon.code, c.coupon.kind.value, str(c.coupon.value), c.coupon.duration.value] for c in items],
    )


@coupons_app.command("archive")
def coupons_archive(tenant: TenantOption, code: str) -> None:
    """Archive a coupon: no new redemptions."""
    _archive_command(catalog.archive_coupon, tenant, code, "coupon")


@tax_rates_app.command("list")
def tax_rates_list(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List tax rates."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        items = all_pages(
            lambda cursor: catalog.list_tax_rates(
                db, tenant_id=tenant_id, include_archived=False, cursor=cursor, limit=100
            )
        )
    if as_json:
        print_json([t.tax_rate.to_spec() for t in items])
        return
    table(
        "Tax rates",
        ["code", "name", "rate", "inclusive"],
        [
            [t.tax_rate.code, t.tax_rate.name, f"{t.tax_rate.rate}%", "yes" if t.tax_rate.inclusive else "no"]
            for t in items
        ],
    )


@tax_rates_app.command("archive")
def tax_rates_archive(tenant: TenantOption, code: str) -> None:
    """Archive a tax rate."""
    _archive_command(catalog.archive_tax_rate, tenant, code, "tax rate")
