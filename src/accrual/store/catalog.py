"""Catalog queries: products, meters, plans and their versions and charges, coupons, tax rates.

Catalog objects are addressed by their code, unique per tenant and never changed. Rows of
published plan versions and their charges, coupon terms and tax rates are frozen by
triggers (migration 0002); these functions only ever insert them, or update what may change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Self

import sqlalchemy as sa

from accrual.domain.errors import Conflict
from accrual.store import constraints
from accrual.store.cache import FactCache
from accrual.store.schema import charges, coupons, meters, plan_versions, plans, products, tax_rates


@dataclasses.dataclass(frozen=True)
class CatalogTable:
    """A table of code-addressed catalog objects."""

    table: sa.Table
    id_column: str
    entity: str


PRODUCTS = CatalogTable(products, "product_id", "product")
METERS = CatalogTable(meters, "meter_id", "meter")
PLANS = CatalogTable(plans, "plan_id", "plan")
COUPONS = CatalogTable(coupons, "coupon_id", "coupon")
TAX_RATES = CatalogTable(tax_rates, "tax_rate_id", "tax_rate")


class CodeTaken(Conflict):
    title = "Code already in use"


def _register_code_uniqueness(kind: CatalogTable) -> None:
    what = kind.entity.replace("_", " ")
    constraints.register(
        f"uq_{kind.table.name}_tenant_id_code",
        lambda: CodeTaken(f"a {what} with this code already exists", field="/code"),
    )


for _kind in (PRODUCTS, METERS, PLANS, COUPONS, TAX_RATES):
    _register_code_uniqueness(_kind)


def get_row(
    conn: sa.Connection, kind: CatalogTable, *, tenant_id: uuid.UUID, code: str, for_update: bool = False
) -> sa.Row[Any] | None:
    table = kind.table
    query = sa.select(table).where(table.c.tenant_id == tenant_id, table.c.code == code)
    if for_update:
        query = query.with_for_update()
    return conn.execute(query).first()


def get_rows(
    conn: sa.Connection, kind: CatalogTable, *, tenant_id: uuid.UUID, codes: Sequence[str]
) -> dict[str, sa.Row[Any]]:
    """The rows with these codes, by code (missing codes are simply absent)."""
    if not codes:
        return {}
    table = kind.table
    rows = conn.execute(sa.select(table).where(table.c.tenant_id == tenant_id, table.c.code.in_(list(codes))))
    return {row.code: row for row in rows}


def insert_row(conn: sa.Connection, kind: CatalogTable, values: Mapping[str, Any]) -> sa.Row[Any]:
    return conn.execute(sa.insert(kind.table).values(dict(values)).returning(kind.table)).one()


def update_row(
    conn: sa.Connection, kind: CatalogTable, *, tenant_id: uuid.UUID, code: str, values: Mapping[str, Any]
) -> sa.Row[Any]:
    table = kind.table
    return conn.execute(
        sa.update(table)
        .where(table.c.tenant_id == tenant_id, table.c.code == code)
        .values(dict(values))
        .returning(table)
    ).one()


def select_rows(kind: CatalogTable, *, tenant_id: uuid.UUID, include_archived: bool) -> sa.Select[Any]:
    table = kind.table
    query = sa.select(table).where(table.c.tenant_id == tenant_id)
    if not include_archived:
        query = query.where(table.c.archived_at.is_(None))
    return query


# --- plan versions and charges ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChargeRow:
    charge_id: uuid.UUID
    position: int
    code: str
    model: str
    timing: str
    meter_code: str | None
    spec: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class PlanVersionRow:
    plan_version_id: uuid.UUID
    plan_id: uuid.UUID
    version: int
    status: str
    interval_unit: str
    interval_count: int
    trial_days: int
    tax_rates: tuple[str, ...]
    created_at: dt.datetime
    created_by: str
    submitted_at: dt.datetime | None
    submitted_by: str | None
    published_at: dt.datetime | None
    published_by: str | None
    charges: tuple[ChargeRow, ...]

    @classmethod
    def from_row(cls, row: sa.Row[Any], charge_rows: Sequence[ChargeRow]) -> Self:
        return cls(
            plan_version_id=row.plan_version_id,
            plan_id=row.plan_id,
            version=row.version,
            status=row.status,
            interval_unit=row.interval_unit,
            interval_count=row.interval_count,
            trial_days=row.trial_days,
            tax_rates=tuple(row.tax_rates),
            created_at=row.created_at,
            created_by=row.created_by,
            submitted_at=row.submitted_at,
            submitted_by=row.submitted_by,
            published_at=row.published_at,
            published_by=row.published_by,
            charges=tuple(charge_rows),
        )

    def terms_spec(self) -> dict[str, Any]:
        """The version's terms in the scenario-file shape."""
        return {
            "interval": self.interval_unit,
            "interval_count": self.interval_count,
            "trial_days": self.trial_days,
            "charges": [dict(c.spec) for c in self.charges],
            "tax_rates": list(self.tax_rates),
        }


def _charges_by_version(
    conn: sa.Connection, *, tenant_id: uuid.UUID, version_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ChargeRow]]:
    if not version_ids:
        return {}
    rows = conn.execute(
        sa.select(charges, meters.c.code.label("meter_code"))
        .outerjoin(
            meters, (meters.c.tenant_id == charges.c.tenant_id) & (meters.c.meter_id == charges.c.meter_id)
        )
        .where(charges.c.tenant_id == tenant_id, charges.c.plan_version_id.in_(list(version_ids)))
        .order_by(charges.c.plan_version_id, charges.c.position)
    )
    by_version: dict[uuid.UUID, list[ChargeRow]] = {vid: [] for vid in version_ids}
    for row in rows:
        by_version[row.plan_version_id].append(
            ChargeRow(
                charge_id=row.charge_id,
                position=row.position,
                code=row.code,
                model=row.model,
                timing=row.timing,
                meter_code=row.meter_code,
                spec=row.spec,
            )
        )
    return by_version


def plan_versions_of(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    plan_ids: Sequence[uuid.UUID],
    version: int | None = None,
    status: str | None = None,
    for_update: bool = False,
) -> list[PlanVersionRow]:
    """Versions of these plans (with their charges, in two queries), ordered by plan and version."""
    if not plan_ids:
        return []
    query = sa.select(plan_versions).where(
        plan_versions.c.tenant_id == tenant_id, plan_versions.c.plan_id.in_(list(plan_ids))
    )
    if version is not None:
        query = query.where(plan_versions.c.version == version)
    if status is not None:
        query = query.where(plan_versions.c.status == status)
    if for_update:
        query = query.with_for_update()
    rows = conn.execute(query.order_by(plan_versions.c.plan_id, plan_versions.c.version)).all()
    charge_map = _charges_by_version(conn, tenant_id=tenant_id, version_ids=[r.plan_version_id for r in rows])
    return [PlanVersionRow.from_row(r, charge_map[r.plan_version_id]) for r in rows]


def next_version_number(conn: sa.Connection, *, tenant_id: uuid.UUID, plan_id: uuid.UUID) -> int:
    current = conn.execute(
        sa.select(sa.func.max(plan_versions.c.version)).where(
            plan_versions.c.tenant_id == tenant_id, plan_versions.c.plan_id == plan_id
        )
    ).scalar_one()
    return int(current or 0) + 1


def insert_version(conn: sa.Connection, values: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(plan_versions).values(dict(values)))


def update_version(
    conn: sa.Connection, *, tenant_id: uuid.UUID, plan_version_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    conn.execute(
        sa.update(plan_versions)
        .where(plan_versions.c.tenant_id == tenant_id, plan_versions.c.plan_version_id == plan_version_id)
        .values(dict(values))
    )


def replace_charges(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    plan_version_id: uuid.UUID,
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Make the draft version's charges exactly `rows` (the triggers refuse this once it is frozen)."""
    conn.execute(
        sa.delete(charges).where(
            charges.c.tenant_id == tenant_id, charges.c.plan_version_id == plan_version_id
        )
    )
    if rows:
        conn.execute(sa.insert(charges), [dict(row) for row in rows])


def meters_in_published_versions(
    conn: sa.Connection, *, tenant_id: uuid.UUID, meter_id: uuid.UUID
) -> list[str]:
    """ "plan vN" labels of the frozen versions whose charges use the meter."""
    rows = conn.execute(
        sa.select(plans.c.code, plan_versions.c.version)
        .select_from(charges)
        .join(
            plan_versions,
            (plan_versions.c.tenant_id == charges.c.tenant_id)
            & (plan_versions.c.plan_version_id == charges.c.plan_version_id),
        )
        .join(
            plans,
            (plans.c.tenant_id == plan_versions.c.tenant_id) & (plans.c.plan_id == plan_versions.c.plan_id),
        )
        .where(
            charges.c.tenant_id == tenant_id,
            charges.c.meter_id == meter_id,
            plan_versions.c.status != "draft",
        )
        .distinct()
        .order_by(plans.c.code, plan_versions.c.version)
    )
    return [f"{row.code} v{row.version}" for row in rows]


@dataclasses.dataclass(frozen=True)
class VersionWithPlan:
    plan_id: uuid.UUID
    plan_code: str
    currency: str
    version: PlanVersionRow


# Published versions are frozen by the database, so what was read once stays true.
_PUBLISHED = FactCache[tuple[uuid.UUID, uuid.UUID], VersionWithPlan](size=20_000)


def versions_by_id(
    conn: sa.Connection, *, tenant_id: uuid.UUID, version_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, VersionWithPlan]:
    """Plan versions (with charges, plan code and currency) by id: from the cache when published,
    else in two queries."""
    found: dict[uuid.UUID, VersionWithPlan] = {}
    missing = []
    for version_id in set(version_ids):
        cached = _PUBLISHED.get((tenant_id, version_id))
        if cached is not None:
            found[version_id] = cached
        else:
            missing.append(version_id)
    if not missing:
        return found
    rows = conn.execute(
        sa.select(plan_versions, plans.c.code.label("plan_code"), plans.c.currency)
        .join(
            plans,
            (plans.c.tenant_id == plan_versions.c.tenant_id) & (plans.c.plan_id == plan_versions.c.plan_id),
        )
        .where(plan_versions.c.tenant_id == tenant_id, plan_versions.c.plan_version_id.in_(missing))
    ).all()
    charge_map = _charges_by_version(conn, tenant_id=tenant_id, version_ids=[r.plan_version_id for r in rows])
    for r in rows:
        version = VersionWithPlan(
            plan_id=r.plan_id,
            plan_code=r.plan_code,
            currency=r.currency,
            version=PlanVersionRow.from_row(r, charge_map[r.plan_version_id]),
        )
        found[r.plan_version_id] = version
        if r.status == "published":
            _PUBLISHED.put((tenant_id, r.plan_version_id), version)
    return found


_COUPON_CODES = FactCache[tuple[uuid.UUID, uuid.UUID], str](size=20_000)


def coupon_codes(
    conn: sa.Connection, *, tenant_id: uuid.UUID, coupon_ids: set[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The codes of these coupons (cached: codes never change)."""
    found = {cid: _COUPON_CODES.get((tenant_id, cid)) for cid in coupon_ids}
    missing = [cid for cid, code in found.items() if code is None]
    if missing:
        for row in conn.execute(
            sa.select(coupons.c.coupon_id, coupons.c.code).where(
                coupons.c.tenant_id == tenant_id, coupons.c.coupon_id.in_(missing)
            )
        ):
            found[row.coupon_id] = row.code
            _COUPON_CODES.put((tenant_id, row.coupon_id), row.code)
    return {cid: code for cid, code in found.items() if code is not None}
