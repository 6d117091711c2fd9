"""Coupons: terms frozen at creation; only the name changes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from accrual.domain import discounts
from accrual.services.catalog.common import (
    CouponView,
    archive_object,
    get_object,
    list_objects,
    rename_object,
    require_active,
)
from accrual.services.unit_of_work import Actor, UnitOfWork, unit_of_work
from accrual.store import catalog as store
from accrual.store import ids
from accrual.store.database import TransactionSource
from accrual.store.pagination import Page

# --- coupons -------------------------------------------------------------------------------


def coupon_terms(coupon: discounts.Coupon) -> dict[str, Any]:
    spec = coupon.to_spec()
    spec.pop("name", None)
    return spec


def _check_coupon_references(uow: UnitOfWork, coupon: discounts.Coupon, *, pointer: str) -> None:
    require_active(
        uow.conn,
        store.PLANS,
        tenant_id=uow.tenant_id,
        wanted=[(code, f"{pointer}/applies_to/plans/{i}") for i, code in enumerate(coupon.applies_to_plans)],
    )


def insert_coupon(uow: UnitOfWork, coupon: discounts.Coupon, *, pointer: str) -> CouponView:
    _check_coupon_references(uow, coupon, pointer=pointer)
    row = store.insert_row(
        uow.conn,
        store.COUPONS,
        {
            "tenant_id": uow.tenant_id,
            "coupon_id": ids.new_id(),
            "code": coupon.code,
            "name": coupon.name,
            "spec": coupon_terms(coupon),
            "created_at": uow.now,
        },
    )
    view = CouponView.of(row)
    uow.changed(
        "coupon.created", entity_type="coupon", entity_id=coupon.code, before=None, after=view.snapshot()
    )
    return view


def create_coupon(
    db: TransactionSource, *, tenant_id: uuid.UUID, spec: Mapping[str, object], actor: Actor, now: dt.datetime
) -> CouponView:
    """Create a coupon; its terms (kind, value, duration, expiry, limits, restrictions) never change."""
    coupon = discounts.parse_coupon(spec, pointer="")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        return insert_coupon(uow, coupon, pointer="")


def get_coupon(db: TransactionSource, *, tenant_id: uuid.UUID, code: str) -> CouponView:
    return get_object(db, store.COUPONS, tenant_id=tenant_id, code=code, view=CouponView.of)


def list_coupons(
    db: TransactionSource, *, tenant_id: uuid.UUID, include_archived: bool, cursor: str | None, limit: int
) -> Page[CouponView]:
    return list_objects(
        db,
        store.COUPONS,
        tenant_id=tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
        view=CouponView.of,
    )


def rename_coupon(
    db: TransactionSource, *, tenant_id: uuid.UUID, code: str, name: str, actor: Actor, now: dt.datetime
) -> CouponView:
    return rename_object(
        db, store.COUPONS, tenant_id=tenant_id, code=code, name=name, view=CouponView.of, actor=actor, now=now
    )


def archive_coupon(
    db: TransactionSource, *, tenant_id: uuid.UUID, code: str, actor: Actor, now: dt.datetime
) -> CouponView:
    return archive_object(
        db, store.COUPONS, tenant_id=tenant_id, code=code, view=CouponView.of, actor=actor, now=now
    )
