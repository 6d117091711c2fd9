"""Customers: create, read by id or external id, update, list."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from accrual.domain import codes, customers
from accrual.domain.errors import Conflict, NotFound
from accrual.services.catalog.common import require_active
from accrual.services.unit_of_work import Actor, read_only, unit_of_work
from accrual.services.usage import quarantine
from accrual.store import catalog as catalog_store
from accrual.store import customers as customer_store
from accrual.store import ids
from accrual.store import test_clocks as clock_store
from accrual.store.database import TransactionSource
from accrual.store.pagination import Page, fetch_page
from accrual.store.schema import subscriptions


class CustomerNotFound(NotFound):
    title = "Customer not found"


class CurrencyInUse(Conflict):
    title = "Currency in use"


@dataclasses.dataclass(frozen=True)
class CustomerView:
    customer_id: uuid.UUID
    definition: customers.CustomerDefinition
    test_clock_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, row: sa.Row[Any]) -> CustomerView:
        definition = customers.parse_customer(
            {
                "external_id": row.external_id,
                "name": row.name,
                "email": row.email,
                "currency": row.currency,
                "timezone": row.timezone,
                "billing_address": row.billing_address,
                "tax_rates": list(row.tax_rates),
                "grace_period_days": row.grace_period_days,
                "payment_method": row.payment_method,
                "metadata": row.metadata,
            },
            pointer="",
        )
        return cls(row.customer_id, definition, row.test_clock_id, row.created_at, row.updated_at)

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": str(self.customer_id),
            **self.definition.to_spec(),
            "test_clock": str(self.test_clock_id) if self.test_clock_id else None,
        }


def _values(definition: customers.CustomerDefinition) -> dict[str, Any]:
    spec = definition.to_spec()
    spec.pop("external_id")
    return spec


def _check_tax_rates(
    conn: sa.Connection, tenant_id: uuid.UUID, definition: customers.CustomerDefinition
) -> None:
    require_active(
        conn,
        catalog_store.TAX_RATES,
        tenant_id=tenant_id,
        wanted=[(code, f"/tax_rates/{i}") for i, code in enumerate(definition.tax_rates)],
    )


def create_customer(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    spec: Mapping[str, object],
    test_clock_id: uuid.UUID | None,
    actor: Actor,
    now: dt.datetime,
) -> CustomerView:
    """Create a customer, optionally on a test clock (for ever: a customer never changes clocks)."""
    definition = customers.parse_customer(spec, pointer="")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        if test_clock_id is not None and (
            clock_store.get(uow.conn, tenant_id=tenant_id, test_clock_id=test_clock_id) is None
        ):
            raise codes.InvalidValue(f"there is no test clock {test_clock_id}", field="/test_clock")
        _check_tax_rates(uow.conn, tenant_id, definition)
        row = customer_store.insert(
            uow.conn,
            {
                "tenant_id": tenant_id,
                "customer_id": ids.new_id(),
                "external_id": definition.external_id,
                **_values(definition),
                "test_clock_id": test_clock_id,
                "created_at": uow.now,
                "updated_at": uow.now,
            },
        )
        view = CustomerView.of(row)
        quarantine.release_held(
            uow.conn, tenant_id=tenant_id, now=uow.now, customer_refs=[definition.external_id]
        )
        uow.changed(
            "customer.created",
            entity_type="customer",
            entity_id=str(view.customer_id),
            before=None,
            after=view.snapshot(),
        )
        return view


def _require(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    customer_id: uuid.UUID | None,
    external_id: str | None,
    for_update: bool = False,
) -> sa.Row[Any]:
    row = customer_store.get(
        conn, tenant_id=tenant_id, customer_id=customer_id, external_id=external_id, for_update=for_update
    )
    if row is None:
        raise CustomerNotFound(f"no customer {customer_id or external_id}")
    return row


def get_customer(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    customer_id: uuid.UUID | None = None,
    external_id: str | None = None,
) -> CustomerView:
    with read_only(db) as conn:
        return CustomerView.of(
            _require(conn, tenant_id=tenant_id, customer_id=customer_id, external_id=external_id)
        )


def update_customer(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    customer_id: uuid.UUID,
    changes: Mapping[str, object],
    actor: Actor,
    now: dt.datetime,
) -> CustomerView:
    """Change a customer's details. The currency can change only while no subscription exists."""
    codes.only_keys(changes, customers.UPDATABLE, pointer="", what="a customer change")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        row = _require(
            uow.conn, tenant_id=tenant_id, customer_id=customer_id, external_id=None, for_update=True
        )
        before = CustomerView.of(row)
        definition = customers.parse_customer(before.definition.to_spec() | dict(changes), pointer="")
        if definition == before.definition:
            return before
        if (
            definition.currency != before.definition.currency
            and uow.conn.execute(
                sa.select(sa.func.count())
                .select_from(subscriptions)
                .where(subscriptions.c.tenant_id == tenant_id, subscriptions.c.customer_id == customer_id)
            ).scalar_one()
        ):
            raise CurrencyInUse(
                "the customer has subscriptions; its currency cannot change", field="/currency"
            )
        _check_tax_rates(uow.conn, tenant_id, definition)
        after = CustomerView.of(
            customer_store.update(
                uow.conn,
                tenant_id=tenant_id,
                customer_id=customer_id,
                values=_values(definition) | {"updated_at": uow.now},
            )
        )
        uow.changed(
            "customer.updated",
            entity_type="customer",
            entity_id=str(customer_id),
            before=before.snapshot(),
            after=after.snapshot(),
        )
        return after


def list_customers(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    test_clock_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> Page[CustomerView]:
    query = customer_store.select_for_tenant(tenant_id, test_clock_id=test_clock_id)
    with read_only(db) as conn:
        return fetch_page(
            conn,
            query,
            query.selected_columns.customer_id,
            cursor=cursor,
            limit=limit,
            descending=True,
            to_item=CustomerView.of,
            key_of=lambda c: c.customer_id,
            parse_key=uuid.UUID,
        )
