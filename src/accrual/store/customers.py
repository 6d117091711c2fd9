"""Customers: addressed by our id or by the caller's external id."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrual.domain.errors import Conflict
from accrual.store import constraints
from accrual.store.cache import FactCache
from accrual.store.schema import customers


class ExternalIdTaken(Conflict):
    title = "External id already in use"


constraints.register(
    "uq_customers_tenant_id_external_id",
    lambda: ExternalIdTaken("a customer with this external id already exists", field="/external_id"),
)


def insert(conn: sa.Connection, values: Mapping[str, Any]) -> sa.Row[Any]:
    return conn.execute(sa.insert(customers).values(dict(values)).returning(customers)).one()


def get(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    customer_id: uuid.UUID | None = None,
    external_id: str | None = None,
    for_update: bool = False,
) -> sa.Row[Any] | None:
    query = sa.select(customers).where(customers.c.tenant_id == tenant_id)
    if customer_id is not None:
        query = query.where(customers.c.customer_id == customer_id)
    if external_id is not None:
        query = query.where(customers.c.external_id == external_id)
    if for_update:
        query = query.with_for_update()
    return conn.execute(query).first()


def update(
    conn: sa.Connection, *, tenant_id: uuid.UUID, customer_id: uuid.UUID, values: Mapping[str, Any]
) -> sa.Row[Any]:
    return conn.execute(
        sa.update(customers)
        .where(customers.c.tenant_id == tenant_id, customers.c.customer_id == customer_id)
        .values(dict(values))
        .returning(customers)
    ).one()


def select_for_tenant(tenant_id: uuid.UUID, *, test_clock_id: uuid.UUID | None = None) -> sa.Select[Any]:
    query = sa.select(customers).where(customers.c.tenant_id == tenant_id)
    if test_clock_id is not None:
        query = query.where(customers.c.test_clock_id == test_clock_id)
    return query


# A customer's external id never changes once created.
_EXTERNAL_IDS = FactCache[tuple[uuid.UUID, uuid.UUID], str](size=100_000)


def get_many(
    conn: sa.Connection, *, tenant_id: uuid.UUID, customer_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, sa.Row[Any]]:
    rows = conn.execute(
        sa.select(customers).where(
            customers.c.tenant_id == tenant_id, customers.c.customer_id.in_(list(customer_ids))
        )
    )
    return {row.customer_id: row for row in rows}


def external_ids(
    conn: sa.Connection, *, tenant_id: uuid.UUID, customer_ids: set[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The external ids of these customers (cached: they never change)."""
    found = {cid: _EXTERNAL_IDS.get((tenant_id, cid)) for cid in customer_ids}
    missing = [cid for cid, external in found.items() if external is None]
    if missing:
        rows = conn.execute(
            sa.select(customers.c.customer_id, customers.c.external_id).where(
                customers.c.tenant_id == tenant_id, customers.c.customer_id.in_(missing)
            )
        )
        for row in rows:
            found[row.customer_id] = row.external_id
            _EXTERNAL_IDS.put((tenant_id, row.customer_id), row.external_id)
    return {cid: external for cid, external in found.items() if external is not None}
