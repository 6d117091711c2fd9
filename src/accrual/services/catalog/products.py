"""Products: groupings of plans."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from accrual.domain import codes
from accrual.services.catalog.common import (
    ProductView,
    archive_object,
    get_object,
    list_objects,
    rename_object,
)
from accrual.services.unit_of_work import Actor, UnitOfWork, unit_of_work
from accrual.store import catalog as store
from accrual.store import ids
from accrual.store.database import TransactionSource
from accrual.store.pagination import Page

# --- products ------------------------------------------------------------------------------


def create_product(
    db: TransactionSource, *, tenant_id: uuid.UUID, spec: Mapping[str, object], actor: Actor, now: dt.datetime
) -> ProductView:
    """Create a product (a grouping of plans): `{code, name?, description?}`."""
    codes.only_keys(spec, ("code", "name", "description"), pointer="", what="a product")
    code = codes.code(codes.required(spec, "code", pointer="", what="a product"), field="/code")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        return insert_product(uow, code=code, spec=spec, pointer="")


def insert_product(uow: UnitOfWork, *, code: str, spec: Mapping[str, object], pointer: str) -> ProductView:
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise codes.InvalidValue("a description is text", field=f"{pointer}/description")
    row = store.insert_row(
        uow.conn,
        store.PRODUCTS,
        {
            "tenant_id": uow.tenant_id,
            "product_id": ids.new_id(),
            "code": code,
            "name": codes.name(spec.get("name"), field=f"{pointer}/name", default=code),
            "description": description,
            "created_at": uow.now,
        },
    )
    view = ProductView.of(row)
    uow.changed("product.created", entity_type="product", entity_id=code, before=None, after=view.snapshot())
    return view


def get_product(db: TransactionSource, *, tenant_id: uuid.UUID, code: str) -> ProductView:
    return get_object(db, store.PRODUCTS, tenant_id=tenant_id, code=code, view=ProductView.of)


def list_products(
    db: TransactionSource, *, tenant_id: uuid.UUID, include_archived: bool, cursor: str | None, limit: int
) -> Page[ProductView]:
    return list_objects(
        db,
        store.PRODUCTS,
        tenant_id=tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
        view=ProductView.of,
    )


def update_product(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    code: str,
    name: str | None,
    description: str | None,
    actor: Actor,
    now: dt.datetime,
) -> ProductView:
    return rename_object(
        db,
        store.PRODUCTS,
        tenant_id=tenant_id,
        code=code,
        name=name,
        description=description,
        view=ProductView.of,
        actor=actor,
        now=now,
    )


def archive_product(
    db: TransactionSource, *, tenant_id: uuid.UUID, code: str, actor: Actor, now: dt.datetime
) -> ProductView:
    return archive_object(
        db, store.PRODUCTS, tenant_id=tenant_id, code=code, view=ProductView.of, actor=actor, now=now
    )
