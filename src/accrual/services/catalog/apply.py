"""Applying a catalog document (a scenario file's `catalog:` section): idempotent, all or nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrual.domain import codes, discounts, meters, plans, taxes
from accrual.domain.plans import VersionStatus
from accrual.services.catalog.common import (
    ArchivedObject,
    CouponView,
    MeterView,
    PlanRowView,
    ProductView,
    TaxRateView,
    TermsDiffer,
    change_row,
)
from accrual.services.catalog.coupons import (
    coupon_terms,
    insert_coupon,
)
from accrual.services.catalog.meters import (
    change_meter,
    insert_meter,
)
from accrual.services.catalog.plans import (
    insert_plan,
    insert_version,
    plan_view,
    product_id_of,
    publish_draft,
    replace_terms,
)
from accrual.services.catalog.products import (
    insert_product,
)
from accrual.services.catalog.tax_rates import (
    insert_tax_rate,
)
from accrual.services.unit_of_work import Actor, UnitOfWork, unit_of_work
from accrual.store import catalog as store
from accrual.store.catalog import CatalogTable
from accrual.store.database import TransactionSource

# --- applying a catalog document -------------------------------------------------------------

CATALOG_SECTIONS = ("meters", "taxes", "products", "plans", "coupons")


@dataclasses.dataclass(frozen=True)
class Applied:
    """What applying a catalog did to one object: created, updated, published, ... or unchanged."""

    kind: str
    code: str
    outcome: str


def _section(
    document: Mapping[str, object], key: str, *, pointer: str
) -> list[tuple[str, Mapping[str, object]]]:
    items = document.get(key) or []
    if not isinstance(items, list | tuple):
        raise codes.InvalidValue(f"{key} is a list", field=f"{pointer}/{key}")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise codes.InvalidValue(f"each of {key} is an object", field=f"{pointer}/{key}/{i}")
    return [(f"{pointer}/{key}/{i}", item) for i, item in enumerate(items)]


def _unique_codes(parsed: Sequence[tuple[str, Any]], *, code_of: Callable[[Any], str]) -> None:
    seen: set[str] = set()
    for item_pointer, item in parsed:
        code = code_of(item)
        if code in seen:
            raise codes.InvalidValue(f"{code!r} appears twice", field=f"{item_pointer}/code")
        seen.add(code)


def _first_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    return next((key for key in new if old.get(key) != new.get(key)), next(iter(new)))


def apply_catalog(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    document: Mapping[str, object],
    pointer: str = "",
    actor: Actor,
    now: dt.datetime,
) -> list[Applied]:
    """Make the catalog hold what `document` (a scenario file's `catalog:` section) says.

    Idempotent: applying the same document twice changes nothing the second time. Objects the
    document does not mention are left alone. A plan whose terms differ from its newest
    version gets a new version, published (or submitted for approval under maker-checker).
    Terms that can never change (a plan's currency, a coupon's or a tax rate's terms, what an
    in-use meter counts) are refused naming the field. The whole document is validated before
    anything is written, and written in one transaction: all of it or nothing.
    """
    codes.only_keys(document, CATALOG_SECTIONS, pointer=pointer, what="a catalog")
    meter_specs = [
        (p, meters.parse_meter(spec, pointer=p)) for p, spec in _section(document, "meters", pointer=pointer)
    ]
    tax_specs = [
        (p, taxes.parse_tax_rate(spec, pointer=p)) for p, spec in _section(document, "taxes", pointer=pointer)
    ]
    product_specs = [(p, spec) for p, spec in _section(document, "products", pointer=pointer)]
    for p, spec in product_specs:
        codes.only_keys(spec, ("code", "name", "description"), pointer=p, what="a product")
        codes.code(codes.required(spec, "code", pointer=p, what="a product"), field=f"{p}/code")
    plan_specs = [
        (p, plans.parse_plan(spec, pointer=p)) for p, spec in _section(document, "plans", pointer=pointer)
    ]
    coupon_specs = [
        (p, discounts.parse_coupon(spec, pointer=p))
        for p, spec in _section(document, "coupons", pointer=pointer)
    ]
    _unique_codes(meter_specs, code_of=lambda m: m.code)
    _unique_codes(tax_specs, code_of=lambda t: t.code)
    _unique_codes(product_specs, code_of=lambda spec: str(spec["code"]))
    _unique_codes(plan_specs, code_of=lambda p: p.code)
    _unique_codes(coupon_specs, code_of=lambda c: c.code)

    applied: list[Applied] = []
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        for p, meter in meter_specs:
            applied.append(_apply_meter(uow, meter, pointer=p))
        for p, tax_rate in tax_specs:
            applied.append(_apply_tax_rate(uow, tax_rate, pointer=p))
        for p, spec in product_specs:
            applied.append(_apply_product(uow, spec, pointer=p))
        for p, plan in plan_specs:
            applied.append(_apply_plan(uow, plan, pointer=p))
        for p, coupon in coupon_specs:
            applied.append(_apply_coupon(uow, coupon, pointer=p))
    return applied


def _refuse_archived_row(row: sa.Row[Any], kind: CatalogTable, *, pointer: str) -> None:
    if row.archived_at is not None:
        raise ArchivedObject(
            f"the {kind.entity.replace('_', ' ')} {row.code!r} is archived; "
            "remove it from the file or use a new code",
            field=f"{pointer}/code",
        )


def _apply_meter(uow: UnitOfWork, meter: meters.MeterDefinition, *, pointer: str) -> Applied:
    row = store.get_row(uow.conn, store.METERS, tenant_id=uow.tenant_id, code=meter.code, for_update=True)
    if row is None:
        insert_meter(uow, meter)
        return Applied("meter", meter.code, "created")
    _refuse_archived_row(row, store.METERS, pointer=pointer)
    before = MeterView.of(row)
    after = change_meter(uow, row, meter, pointer=pointer)
    return Applied("meter", meter.code, "unchanged" if after == before else "updated")


def _apply_tax_rate(uow: UnitOfWork, tax_rate: taxes.TaxRate, *, pointer: str) -> Applied:
    row = store.get_row(
        uow.conn, store.TAX_RATES, tenant_id=uow.tenant_id, code=tax_rate.code, for_update=True
    )
    if row is None:
        insert_tax_rate(uow, tax_rate)
        return Applied("tax_rate", tax_rate.code, "created")
    _refuse_archived_row(row, store.TAX_RATES, pointer=pointer)
    current = TaxRateView.of(row).tax_rate
    if (current.rate, current.inclusive) != (tax_rate.rate, tax_rate.inclusive):
        field = "rate" if current.rate != tax_rate.rate else "inclusive"
        raise TermsDiffer(
            f"tax rate {tax_rate.code!r} exists with rate {current.rate}% "
            f"{'inclusive' if current.inclusive else 'exclusive'}; a tax rate never changes: use a new code",
            field=f"{pointer}/{field}",
        )
    after = change_row(
        uow, store.TAX_RATES, row, {"name": tax_rate.name}, view=TaxRateView.of, action="updated"
    )
    return Applied("tax_rate", tax_rate.code, "unchanged" if after == TaxRateView.of(row) else "updated")


def _apply_product(uow: UnitOfWork, spec: Mapping[str, object], *, pointer: str) -> Applied:
    code = str(spec["code"])
    row = store.get_row(uow.conn, store.PRODUCTS, tenant_id=uow.tenant_id, code=code, for_update=True)
    if row is None:
        insert_product(uow, code=code, spec=spec, pointer=pointer)
        return Applied("product", code, "created")
    _refuse_archived_row(row, store.PRODUCTS, pointer=pointer)
    values = {
        "name": codes.name(spec.get("name"), field=f"{pointer}/name", default=code),
        "description": spec.get("description"),
    }
    after = change_row(uow, store.PRODUCTS, row, values, view=ProductView.of, action="updated")
    return Applied("product", code, "unchanged" if after == ProductView.of(row) else "updated")


def _apply_plan(uow: UnitOfWork, definition: plans.PlanDefinition, *, pointer: str) -> Applied:
    row = store.get_row(uow.conn, store.PLANS, tenant_id=uow.tenant_id, code=definition.code, for_update=True)
    if row is None:
        plan, draft = insert_plan(uow, definition, pointer=pointer)
        published = publish_draft(uow, plan, draft)
        return Applied("plan", definition.code, f"created, version 1 {published.status.value}")
    _refuse_archived_row(row, store.PLANS, pointer=pointer)
    if row.currency != definition.currency.code:
        raise TermsDiffer(
            f"plan {definition.code!r} is priced in {row.currency}; "
            "a plan's currency never changes: use a new code",
            field=f"{pointer}/currency",
        )
    product_id = product_id_of(uow, definition, pointer=pointer)
    renamed = change_row(
        uow,
        store.PLANS,
        row,
        {"name": definition.name, "description": definition.description, "product_id": product_id},
        view=PlanRowView,
        action="updated",
    )
    plan = plan_view(uow.conn, row)
    frozen = [v for v in plan.versions if v.status is not VersionStatus.DRAFT]
    if frozen and frozen[-1].terms() == definition.terms:
        return Applied("plan", definition.code, "unchanged" if renamed == PlanRowView(row) else "updated")
    open_version = plan.open_version
    if open_version is not None and open_version.status is VersionStatus.PENDING_APPROVAL:
        raise plans.VersionNotEditable(
            f"plan {definition.code!r} version {open_version.row.version} awaits approval; "
            "approve or reject it "
            "before applying new terms",
            field=f"{pointer}/code",
        )
    if open_version is not None:
        draft = replace_terms(uow, plan, open_version, definition.terms, pointer=pointer)
    else:
        draft = insert_version(uow, plan, definition.terms, pointer=pointer)
    published = publish_draft(uow, plan, draft)
    return Applied("plan", definition.code, f"version {published.row.version} {published.status.value}")


def _apply_coupon(uow: UnitOfWork, coupon: discounts.Coupon, *, pointer: str) -> Applied:
    row = store.get_row(uow.conn, store.COUPONS, tenant_id=uow.tenant_id, code=coupon.code, for_update=True)
    if row is None:
        insert_coupon(uow, coupon, pointer=pointer)
        return Applied("coupon", coupon.code, "created")
    _refuse_archived_row(row, store.COUPONS, pointer=pointer)
    current = coupon_terms(CouponView.of(row).coupon)
    wanted = coupon_terms(coupon)
    if current != wanted:
        raise TermsDiffer(
            f"coupon {coupon.code!r} exists with other terms; a coupon's terms never change: use a new code",
            field=f"{pointer}/{_first_difference(current, wanted)}",
        )
    after = change_row(uow, store.COUPONS, row, {"name": coupon.name}, view=CouponView.of, action="updated")
    return Applied("coupon", coupon.code, "unchanged" if after == CouponView.of(row) else "updated")
