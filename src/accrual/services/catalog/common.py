"""What the catalog services share: views of catalog objects, errors, and get/list/change helpers.

The catalog: products, meters, plans with immutable published versions, coupons, tax rates.

Every function validates its input with the domain's parsers (errors name the field with a
JSON pointer under `pointer`), checks references (meters, tax rates, products, plans) in the
same transaction, and records each change in the audit log and the outbox.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa

from accrual.domain import codes, discounts, meters, plans, taxes
from accrual.domain.errors import Conflict, InvalidInput, NotFound
from accrual.domain.plans import VersionStatus
from accrual.services.unit_of_work import Actor, UnitOfWork, read_only, unit_of_work
from accrual.store import catalog as store
from accrual.store.catalog import CatalogTable
from accrual.store.database import TransactionSource
from accrual.store.pagination import Page, fetch_page

T = TypeVar("T")


class CatalogObjectNotFound(NotFound):
    title = "Catalog object not found"


class UnknownReference(InvalidInput):
    title = "Unknown reference"


class PlanVersionNotFound(NotFound):
    title = "Plan version not found"


class ArchivedObject(Conflict):
    title = "Archived"


class TermsDiffer(Conflict):
    title = "Terms cannot change"


def not_found(kind: CatalogTable, code: str) -> CatalogObjectNotFound:
    return CatalogObjectNotFound(f"no {kind.entity.replace('_', ' ')} with code {code!r}")


def require_row(
    conn: sa.Connection, kind: CatalogTable, *, tenant_id: uuid.UUID, code: str, for_update: bool = False
) -> sa.Row[Any]:
    row = store.get_row(conn, kind, tenant_id=tenant_id, code=code, for_update=for_update)
    if row is None:
        raise not_found(kind, code)
    return row


def stamp(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


# --- views -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProductView:
    product_id: uuid.UUID
    code: str
    name: str
    description: str | None
    created_at: dt.datetime
    archived_at: dt.datetime | None

    @classmethod
    def of(cls, row: sa.Row[Any]) -> ProductView:
        return cls(row.product_id, row.code, row.name, row.description, row.created_at, row.archived_at)

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": str(self.product_id),
            "code": self.code,
            "name": self.name,
            "description": self.description,
            "archived_at": stamp(self.archived_at),
        }


@dataclasses.dataclass(frozen=True)
class MeterView:
    meter_id: uuid.UUID
    definition: meters.MeterDefinition
    created_at: dt.datetime
    updated_at: dt.datetime
    archived_at: dt.datetime | None

    @classmethod
    def of(cls, row: sa.Row[Any]) -> MeterView:
        definition = meters.parse_meter(
            {
                "code": row.code,
                "name": row.name,
                "aggregation": row.aggregation,
                "field": row.field,
                "filters": row.filters,
                "group_by": list(row.group_by),
            },
            pointer="",
        )
        return cls(row.meter_id, definition, row.created_at, row.updated_at, row.archived_at)

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": str(self.meter_id),
            **self.definition.to_spec(),
            "archived_at": stamp(self.archived_at),
        }


@dataclasses.dataclass(frozen=True)
class VersionView:
    plan_code: str
    row: store.PlanVersionRow

    @property
    def status(self) -> VersionStatus:
        return VersionStatus(self.row.status)

    def terms(self) -> plans.PlanTerms:
        return plans.parse_terms(self.row.terms_spec(), pointer="")

    def snapshot(self) -> dict[str, Any]:
        r = self.row
        return {
            "id": str(r.plan_version_id),
            "plan": self.plan_code,
            "version": r.version,
            "status": r.status,
            **r.terms_spec(),
            "submitted_by": r.submitted_by,
            "published_at": stamp(r.published_at),
            "published_by": r.published_by,
        }


@dataclasses.dataclass(frozen=True)
class PlanView:
    plan_id: uuid.UUID
    code: str
    name: str
    description: str | None
    currency: str
    product: str | None
    created_at: dt.datetime
    archived_at: dt.datetime | None
    versions: tuple[VersionView, ...]

    @property
    def current(self) -> VersionView | None:
        """The newest published version: what new subscriptions get."""
        published = [v for v in self.versions if v.status is VersionStatus.PUBLISHED]
        return published[-1] if published else None

    @property
    def open_version(self) -> VersionView | None:
        """The draft or the version awaiting approval, if any (there is at most one)."""
        return next((v for v in self.versions if v.status is not VersionStatus.PUBLISHED), None)

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": str(self.plan_id),
            "code": self.code,
            "name": self.name,
            "description": self.description,
            "currency": self.currency,
            "product": self.product,
            "archived_at": stamp(self.archived_at),
        }


@dataclasses.dataclass(frozen=True)
class CouponView:
    coupon_id: uuid.UUID
    coupon: discounts.Coupon
    created_at: dt.datetime
    archived_at: dt.datetime | None

    @classmethod
    def of(cls, row: sa.Row[Any]) -> CouponView:
        spec = dict(row.spec) | {"name": row.name}
        return cls(row.coupon_id, discounts.parse_coupon(spec, pointer=""), row.created_at, row.archived_at)

    def snapshot(self) -> dict[str, Any]:
        return {"id": str(self.coupon_id), **self.coupon.to_spec(), "archived_at": stamp(self.archived_at)}


@dataclasses.dataclass(frozen=True)
class TaxRateView:
    tax_rate_id: uuid.UUID
    tax_rate: taxes.TaxRate
    created_at: dt.datetime
    archived_at: dt.datetime | None

    @classmethod
    def of(cls, row: sa.Row[Any]) -> TaxRateView:
        spec = {"code": row.code, "name": row.name, "rate": Decimal(row.rate), "inclusive": row.inclusive}
        return cls(row.tax_rate_id, taxes.parse_tax_rate(spec, pointer=""), row.created_at, row.archived_at)

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": str(self.tax_rate_id),
            **self.tax_rate.to_spec(),
            "archived_at": stamp(self.archived_at),
        }


@dataclasses.dataclass(frozen=True)
class PlanRowView:
    """A plan row alone, for recording changes to the plan's own fields."""

    row: sa.Row[Any]

    def snapshot(self) -> dict[str, Any]:
        r = self.row
        return {
            "id": str(r.plan_id),
            "code": r.code,
            "name": r.name,
            "description": r.description,
            "currency": r.currency,
            "archived_at": stamp(r.archived_at),
        }


# --- shared: get, list, rename, archive ----------------------------------------------------


def get_object(
    db: TransactionSource,
    kind: CatalogTable,
    *,
    tenant_id: uuid.UUID,
    code: str,
    view: Callable[[sa.Row[Any]], T],
) -> T:
    with read_only(db) as conn:
        return view(require_row(conn, kind, tenant_id=tenant_id, code=code))


def list_objects(
    db: TransactionSource,
    kind: CatalogTable,
    *,
    tenant_id: uuid.UUID,
    include_archived: bool,
    cursor: str | None,
    limit: int,
    view: Callable[[sa.Row[Any]], T] | None = None,
    views: Callable[[sa.Connection, Sequence[sa.Row[Any]]], list[T]] | None = None,
) -> Page[T]:
    """A page of objects by code: `view` makes one from its row, or `views` a page of them at once
    (for views that need more queries, which then run per page, not per object)."""
    query = store.select_rows(kind, tenant_id=tenant_id, include_archived=include_archived)
    with read_only(db) as conn:
        page = fetch_page(
            conn,
            query,
            query.selected_columns.code,
            cursor=cursor,
            limit=limit,
            descending=False,
            to_item=lambda row: row,
            key_of=lambda row: row.code,
            parse_key=str,
        )
        if views is not None:
            return Page(items=views(conn, page.items), next_cursor=page.next_cursor)
    if view is None:
        raise TypeError("list_objects needs view or views")
    return Page(items=[view(row) for row in page.items], next_cursor=page.next_cursor)


def change_object(
    db: TransactionSource,
    kind: CatalogTable,
    *,
    tenant_id: uuid.UUID,
    code: str,
    values: Callable[[sa.Row[Any], UnitOfWork], dict[str, Any]],
    view: Callable[[sa.Row[Any]], Any],
    action: str,
    actor: Actor,
    now: dt.datetime,
) -> Any:
    """Update a code-addressed row with `values(row, uow)`; record it unless nothing changed."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        row = require_row(uow.conn, kind, tenant_id=tenant_id, code=code, for_update=True)
        return change_row(uow, kind, row, values(row, uow), view=view, action=action)


def change_row(
    uow: UnitOfWork,
    kind: CatalogTable,
    row: sa.Row[Any],
    values: Mapping[str, Any],
    *,
    view: Callable[[sa.Row[Any]], Any],
    action: str,
) -> Any:
    changes = {k: v for k, v in values.items() if getattr(row, k) != v}
    if not changes:
        return view(row)
    before = view(row)
    after = view(store.update_row(uow.conn, kind, tenant_id=uow.tenant_id, code=row.code, values=changes))
    uow.changed(
        f"{kind.entity}.{action}",
        entity_type=kind.entity,
        entity_id=row.code,
        before=before.snapshot(),
        after=after.snapshot(),
    )
    return after


def archive_object(
    db: TransactionSource,
    kind: CatalogTable,
    *,
    tenant_id: uuid.UUID,
    code: str,
    view: Callable[[sa.Row[Any]], T],
    actor: Actor,
    now: dt.datetime,
) -> T:
    """Archive: kept forever for what already uses it, refused for anything new. Idempotent."""
    result: T = change_object(
        db,
        kind,
        tenant_id=tenant_id,
        code=code,
        values=lambda row, uow: {"archived_at": row.archived_at or uow.now},
        view=view,
        action="archived",
        actor=actor,
        now=now,
    )
    return result


def rename_object(
    db: TransactionSource,
    kind: CatalogTable,
    *,
    tenant_id: uuid.UUID,
    code: str,
    name: str | None,
    description: str | None = None,
    view: Callable[[sa.Row[Any]], T],
    actor: Actor,
    now: dt.datetime,
) -> T:
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = codes.name(name, field="/name", default=code)
    if description is not None:
        values["description"] = description
    result: T = change_object(
        db,
        kind,
        tenant_id=tenant_id,
        code=code,
        values=lambda _row, _uow: values,
        view=view,
        action="updated",
        actor=actor,
        now=now,
    )
    return result


def require_active(
    conn: sa.Connection, kind: CatalogTable, *, tenant_id: uuid.UUID, wanted: Sequence[tuple[str, str]]
) -> dict[str, sa.Row[Any]]:
    """Rows for (code, field) references; an unknown or archived one is refused naming its field."""
    found = store.get_rows(conn, kind, tenant_id=tenant_id, codes=sorted({c for c, _ in wanted}))
    what = kind.entity.replace("_", " ")
    for code, field in wanted:
        row = found.get(code)
        if row is None:
            raise UnknownReference(f"there is no {what} with code {code!r}", field=field)
        if row.archived_at is not None:
            raise UnknownReference(f"the {what} {code!r} is archived and cannot be used anew", field=field)
    return found
