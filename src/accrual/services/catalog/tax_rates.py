"""Tax rates: a rate never changes; a different rate is a new tax rate."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from accrual.domain import taxes
from accrual.services.catalog.common import (
    TaxRateView,
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

# --- tax rates -----------------------------------------------------------------------------


def insert_tax_rate(uow: UnitOfWork, tax_rate: taxes.TaxRate) -> TaxRateView:
    row = store.insert_row(
        uow.conn,
        store.TAX_RATES,
        {
            "tenant_id": uow.tenant_id,
            "tax_rate_id": ids.new_id(),
            "code": tax_rate.code,
            "name": tax_rate.name,
            "rate": tax_rate.rate,
            "inclusive": tax_rate.inclusive,
            "created_at": uow.now,
        },
    )
    view = TaxRateView.of(row)
    uow.changed(
        "tax_rate.created",
        entity_type="tax_rate",
        entity_id=tax_rate.code,
        before=None,
        after=view.snapshot(),
    )
    return view


def create_tax_rate(
    db: TransactionSource, *, tenant_id: uuid.UUID, spec: Mapping[str, object], actor: Actor, now: dt.datetime
) -> TaxRateView:
    """Create a tax rate `{code, name?, rate, inclusive?}`; its rate never changes afterwards."""
    tax_rate = taxes.parse_tax_rate(spec, pointer="")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        return insert_tax_rate(uow, tax_rate)


def get_tax_rate(db: TransactionSource, *, tenant_id: uuid.UUID, code: str) -> TaxRateView:
    return get_object(db, store.TAX_RATES, tenant_id=tenant_id, code=code, view=TaxRateView.of)


def list_tax_rates(
    db: TransactionSource, *, tenant_id: uuid.UUID, include_archived: bool, cursor: str | None, limit: int
) -> Page[TaxRateView]:
    return list_objects(
        db,
        store.TAX_RATES,
        tenant_id=tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
        view=TaxRateView.of,
    )


def rename_tax_rate(
    db: TransactionSource, *, tenant_id: uuid.UUID, code: str, name: str, actor: Actor, now: dt.datetime
) -> TaxRateView:
    return rename_object(
        db,
        store.TAX_RATES,
        tenant_id=tenant_id,
        code=code,
        name=name,
        view=TaxRateView.of,
        actor=actor,
        now=now,
    )


def archive_tax_rate(
    db: TransactionSource, *, tenant_id: uuid.UUID, code: str, actor: Actor, now: dt.datetime
) -> TaxRateView:
    return archive_object(
        db, store.TAX_RATES, tenant_id=tenant_id, code=code, view=TaxRateView.of, actor=actor, now=now
    )
