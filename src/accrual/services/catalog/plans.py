"""Plans and versions: drafts are edited, publishing freezes a version forever (maker-checker optional)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrual.domain import codes, plans
from accrual.domain.plans import VersionStatus
from accrual.services.catalog.common import (
    ArchivedObject,
    PlanRowView,
    PlanVersionNotFound,
    PlanView,
    VersionView,
    archive_object,
    list_objects,
    rename_object,
    require_active,
    require_row,
)
from accrual.services.unit_of_work import Actor, UnitOfWork, read_only, unit_of_work
from accrual.store import catalog as store
from accrual.store import ids
from accrual.store import tenants as tenant_store
from accrual.store.database import TransactionSource
from accrual.store.pagination import Page

# --- plans and versions --------------------------------------------------------------------


def plan_view(conn: sa.Connection, row: sa.Row[Any]) -> PlanView:
    return plan_views(conn, [row])[0]


def plan_views(conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> list[PlanView]:
    """Plans with their versions and charges, in three queries whatever the number of plans."""
    if not rows:
        return []
    tenant_id = rows[0].tenant_id
    versions = store.plan_versions_of(conn, tenant_id=tenant_id, plan_ids=[r.plan_id for r in rows])
    product_ids = [r.product_id for r in rows if r.product_id is not None]
    product_codes: dict[uuid.UUID, str] = {}
    if product_ids:
        product_rows = conn.execute(
            sa.select(store.PRODUCTS.table.c.product_id, store.PRODUCTS.table.c.code).where(
                store.PRODUCTS.table.c.tenant_id == tenant_id,
                store.PRODUCTS.table.c.product_id.in_(product_ids),
            )
        )
        product_codes = {r.product_id: r.code for r in product_rows}
    return [
        PlanView(
            plan_id=row.plan_id,
            code=row.code,
            name=row.name,
            description=row.description,
            currency=row.currency,
            product=product_codes.get(row.product_id) if row.product_id else None,
            created_at=row.created_at,
            archived_at=row.archived_at,
            versions=tuple(VersionView(row.code, v) for v in versions if v.plan_id == row.plan_id),
        )
        for row in rows
    ]


def load_plan(conn: sa.Connection, *, tenant_id: uuid.UUID, code: str, for_update: bool = False) -> PlanView:
    return plan_view(
        conn, require_row(conn, store.PLANS, tenant_id=tenant_id, code=code, for_update=for_update)
    )


def _version(plan: PlanView, version: int) -> VersionView:
    for candidate in plan.versions:
        if candidate.row.version == version:
            return candidate
    raise PlanVersionNotFound(f"plan {plan.code!r} has no version {version}")


def _charge_rows(
    uow: UnitOfWork, *, plan_version_id: uuid.UUID, terms: plans.PlanTerms, pointer: str
) -> list[dict[str, Any]]:
    """Charge rows for `terms`, checking every meter and tax rate it names exists and is active."""
    meter_rows = require_active(
        uow.conn,
        store.METERS,
        tenant_id=uow.tenant_id,
        wanted=[
            (c.meter, f"{pointer}/charges/{i}/meter")
            for i, c in enumerate(terms.charges)
            if c.meter is not None
        ],
    )
    require_active(
        uow.conn,
        store.TAX_RATES,
        tenant_id=uow.tenant_id,
        wanted=[(code, f"{pointer}/tax_rates/{i}") for i, code in enumerate(terms.tax_rates)]
        + [
            (code, f"{pointer}/charges/{i}/tax_rates/{j}")
            for i, charge in enumerate(terms.charges)
            for j, code in enumerate(charge.tax_rates)
        ],
    )
    return [
        {
            "tenant_id": uow.tenant_id,
            "charge_id": ids.new_id(),
            "plan_version_id": plan_version_id,
            "position": position,
            "code": charge.code,
            "model": charge.model.kind.value,
            "timing": charge.timing.value,
            "meter_id": meter_rows[charge.meter].meter_id if charge.meter is not None else None,
            "spec": charge.to_spec(),
        }
        for position, charge in enumerate(terms.charges)
    ]


def _write_charges(
    uow: UnitOfWork, *, plan_version_id: uuid.UUID, terms: plans.PlanTerms, pointer: str
) -> None:
    store.replace_charges(
        uow.conn,
        tenant_id=uow.tenant_id,
        plan_version_id=plan_version_id,
        rows=_charge_rows(uow, plan_version_id=plan_version_id, terms=terms, pointer=pointer),
    )


def _terms_values(terms: plans.PlanTerms) -> dict[str, Any]:
    return {
        "interval_unit": terms.interval.unit.value,
        "interval_count": terms.interval.count,
        "trial_days": terms.trial_days,
        "tax_rates": list(terms.tax_rates),
    }


def insert_version(uow: UnitOfWork, plan: PlanView, terms: plans.PlanTerms, *, pointer: str) -> VersionView:
    version_id = ids.new_id()
    store.insert_version(
        uow.conn,
        {
            "tenant_id": uow.tenant_id,
            "plan_version_id": version_id,
            "plan_id": plan.plan_id,
            "version": store.next_version_number(uow.conn, tenant_id=uow.tenant_id, plan_id=plan.plan_id),
            "status": VersionStatus.DRAFT.value,
            **_terms_values(terms),
            "created_at": uow.now,
            "created_by": str(uow.actor),
        },
    )
    _write_charges(uow, plan_version_id=version_id, terms=terms, pointer=pointer)
    view = version_by_id(uow, plan.code, version_id)
    uow.changed(
        "plan_version.created",
        entity_type="plan_version",
        entity_id=f"{plan.code}/{view.row.version}",
        before=None,
        after=view.snapshot(),
    )
    return view


def version_by_id(uow: UnitOfWork, plan_code: str, plan_version_id: uuid.UUID) -> VersionView:
    plan = load_plan(uow.conn, tenant_id=uow.tenant_id, code=plan_code)
    return next(v for v in plan.versions if v.row.plan_version_id == plan_version_id)


def replace_terms(
    uow: UnitOfWork, plan: PlanView, draft: VersionView, terms: plans.PlanTerms, *, pointer: str
) -> VersionView:
    if draft.status is not VersionStatus.DRAFT:
        raise plans.VersionNotEditable(
            f"{plan.code} version {draft.row.version} is {draft.status.value}; only a draft can be edited"
        )
    if draft.terms() == terms:
        return draft
    version_id = draft.row.plan_version_id
    store.update_version(
        uow.conn, tenant_id=uow.tenant_id, plan_version_id=version_id, values=_terms_values(terms)
    )
    _write_charges(uow, plan_version_id=version_id, terms=terms, pointer=pointer)
    after = version_by_id(uow, plan.code, version_id)
    uow.changed(
        "plan_version.updated",
        entity_type="plan_version",
        entity_id=f"{plan.code}/{draft.row.version}",
        before=draft.snapshot(),
        after=after.snapshot(),
    )
    return after


def publish_draft(uow: UnitOfWork, plan: PlanView, version: VersionView) -> VersionView:
    """Publish a draft: at once, or (maker-checker) pending a second person's approval."""
    if version.status is not VersionStatus.DRAFT:
        raise plans.VersionNotEditable(
            f"{plan.code} version {version.row.version} is {version.status.value}; "
            "only a draft can be published"
        )
    plans.check_publishable(version.terms(), plan=plan.code, version=version.row.version)
    tenant = tenant_store.get(uow.conn, uow.tenant_id)
    needs_approval = tenant is not None and tenant.maker_checker
    values: dict[str, Any] = {"submitted_at": uow.now, "submitted_by": str(uow.actor)}
    if needs_approval:
        values["status"] = VersionStatus.PENDING_APPROVAL.value
    else:
        values |= {
            "status": VersionStatus.PUBLISHED.value,
            "published_at": uow.now,
            "published_by": str(uow.actor),
        }
    store.update_version(
        uow.conn, tenant_id=uow.tenant_id, plan_version_id=version.row.plan_version_id, values=values
    )
    after = version_by_id(uow, plan.code, version.row.plan_version_id)
    uow.changed(
        "plan_version.submitted" if needs_approval else "plan_version.published",
        entity_type="plan_version",
        entity_id=f"{plan.code}/{version.row.version}",
        before=version.snapshot(),
        after=after.snapshot(),
    )
    return after


def product_id_of(uow: UnitOfWork, definition: plans.PlanDefinition, *, pointer: str) -> uuid.UUID | None:
    """The id of the plan's product, which must exist and be active; None when it names none."""
    if definition.product is None:
        return None
    found = require_active(
        uow.conn, store.PRODUCTS, tenant_id=uow.tenant_id, wanted=[(definition.product, f"{pointer}/product")]
    )
    product_id: uuid.UUID = found[definition.product].product_id
    return product_id


def insert_plan(
    uow: UnitOfWork, definition: plans.PlanDefinition, *, pointer: str
) -> tuple[PlanView, VersionView]:
    product_id = product_id_of(uow, definition, pointer=pointer)
    row = store.insert_row(
        uow.conn,
        store.PLANS,
        {
            "tenant_id": uow.tenant_id,
            "plan_id": ids.new_id(),
            "code": definition.code,
            "name": definition.name,
            "description": definition.description,
            "currency": definition.currency.code,
            "product_id": product_id,
            "created_at": uow.now,
        },
    )
    plan = plan_view(uow.conn, row)
    uow.changed("plan.created", entity_type="plan", entity_id=plan.code, before=None, after=plan.snapshot())
    draft = insert_version(uow, plan, definition.terms, pointer=pointer)
    return load_plan(uow.conn, tenant_id=uow.tenant_id, code=plan.code), draft


def create_plan(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    spec: Mapping[str, object],
    publish: bool,
    actor: Actor,
    now: dt.datetime,
) -> PlanView:
    """Create a plan with its first version as a draft (published at once if `publish`)."""
    definition = plans.parse_plan(spec, pointer="")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        plan, draft = insert_plan(uow, definition, pointer="")
        if publish:
            publish_draft(uow, plan, draft)
            plan = load_plan(uow.conn, tenant_id=tenant_id, code=plan.code)
        return plan


def get_plan(db: TransactionSource, *, tenant_id: uuid.UUID, code: str) -> PlanView:
    with read_only(db) as conn:
        return load_plan(conn, tenant_id=tenant_id, code=code)


def list_plans(
    db: TransactionSource, *, tenant_id: uuid.UUID, include_archived: bool, cursor: str | None, limit: int
) -> Page[PlanView]:
    return list_objects(
        db,
        store.PLANS,
        tenant_id=tenant_id,
        include_archived=include_archived,
        cursor=cursor,
        limit=limit,
        views=plan_views,
    )


def update_plan(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    code: str,
    name: str | None,
    description: str | None,
    actor: Actor,
    now: dt.datetime,
) -> PlanView:
    """Change a plan's name or description (its terms change through versions)."""
    rename_object(
        db,
        store.PLANS,
        tenant_id=tenant_id,
        code=code,
        name=name,
        description=description,
        view=PlanRowView,
        actor=actor,
        now=now,
    )
    return get_plan(db, tenant_id=tenant_id, code=code)


def archive_plan(
    db: TransactionSource, *, tenant_id: uuid.UUID, code: str, actor: Actor, now: dt.datetime
) -> PlanView:
    """Archive a plan: existing subscriptions keep it, new ones cannot choose it."""
    archive_object(db, store.PLANS, tenant_id=tenant_id, code=code, view=PlanRowView, actor=actor, now=now)
    return get_plan(db, tenant_id=tenant_id, code=code)


def get_plan_version(db: TransactionSource, *, tenant_id: uuid.UUID, code: str, version: int) -> VersionView:
    with read_only(db) as conn:
        return _version(load_plan(conn, tenant_id=tenant_id, code=code), version)


def create_draft(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    code: str,
    terms: Mapping[str, object] | None,
    actor: Actor,
    now: dt.datetime,
) -> VersionView:
    """Open a new draft version: with `terms`, or a copy of the newest version's terms.

    Raises `VersionNotEditable` if the plan already has a draft or a version awaiting approval.
    """
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        plan = load_plan(uow.conn, tenant_id=tenant_id, code=code, for_update=True)
        refuse_archived(plan)
        if plan.open_version is not None:
            raise plans.VersionNotEditable(
                f"{code} already has version {plan.open_version.row.version} "
                f"({plan.open_version.status.value}); "
                "edit or publish it first"
            )
        parsed = (
            plans.parse_terms(_terms_only(terms), pointer="")
            if terms is not None
            else plan.versions[-1].terms()
        )
        return insert_version(uow, plan, parsed, pointer="")


def _terms_only(terms: Mapping[str, object]) -> Mapping[str, object]:
    codes.only_keys(terms, plans.TERMS, pointer="", what="plan terms")
    return terms


def refuse_archived(plan: PlanView) -> None:
    if plan.archived_at is not None:
        raise ArchivedObject(f"plan {plan.code!r} is archived")


def update_draft(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    code: str,
    terms: Mapping[str, object],
    actor: Actor,
    now: dt.datetime,
) -> VersionView:
    """Replace the terms of the plan's draft version. Raises `VersionNotEditable` when there is none."""
    parsed = plans.parse_terms(_terms_only(terms), pointer="")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        plan = load_plan(uow.conn, tenant_id=tenant_id, code=code, for_update=True)
        draft = plan.open_version
        if draft is None:
            raise plans.VersionNotEditable(f"{code} has no draft version; create one first")
        return replace_terms(uow, plan, draft, parsed, pointer="")


def publish_version(
    db: TransactionSource, *, tenant_id: uuid.UUID, code: str, version: int, actor: Actor, now: dt.datetime
) -> VersionView:
    """Publish a draft version: frozen forever from now (or from approval, under maker-checker)."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        plan = load_plan(uow.conn, tenant_id=tenant_id, code=code, for_update=True)
        return publish_draft(uow, plan, _version(plan, version))


def approve_version(
    db: TransactionSource, *, tenant_id: uuid.UUID, code: str, version: int, actor: Actor, now: dt.datetime
) -> VersionView:
    """Approve a version awaiting approval; its maker cannot. Raises `SelfApproval`."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        plan = load_plan(uow.conn, tenant_id=tenant_id, code=code, for_update=True)
        pending = _version(plan, version)
        if pending.status is not VersionStatus.PENDING_APPROVAL:
            raise plans.VersionNotEditable(
                f"{code} version {version} is {pending.status.value}, not awaiting approval"
            )
        if pending.row.submitted_by == str(actor):
            raise plans.SelfApproval(
                f"{code} version {version} was submitted by {actor}; a different person must approve it"
            )
        store.update_version(
            uow.conn,
            tenant_id=tenant_id,
            plan_version_id=pending.row.plan_version_id,
            values={
                "status": VersionStatus.PUBLISHED.value,
                "published_at": uow.now,
                "published_by": str(actor),
            },
        )
        after = version_by_id(uow, code, pending.row.plan_version_id)
        uow.changed(
            "plan_version.published",
            entity_type="plan_version",
            entity_id=f"{code}/{version}",
            before=pending.snapshot(),
            after=after.snapshot(),
        )
        return after


def reject_version(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    code: str,
    version: int,
    reason: str,
    actor: Actor,
    now: dt.datetime,
) -> VersionView:
    """Send a version awaiting approval back to draft, with the reviewer's reason (audited)."""
    reason = codes.name(reason, field="/reason", default="")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        plan = load_plan(uow.conn, tenant_id=tenant_id, code=code, for_update=True)
        pending = _version(plan, version)
        if pending.status is not VersionStatus.PENDING_APPROVAL:
            raise plans.VersionNotEditable(
                f"{code} version {version} is {pending.status.value}, not awaiting approval"
            )
        store.update_version(
            uow.conn,
            tenant_id=tenant_id,
            plan_version_id=pending.row.plan_version_id,
            values={"status": VersionStatus.DRAFT.value, "submitted_at": None, "submitted_by": None},
        )
        after = version_by_id(uow, code, pending.row.plan_version_id)
        uow.changed(
            "plan_version.rejected",
            entity_type="plan_version",
            entity_id=f"{code}/{version}",
            before=pending.snapshot(),
            after=after.snapshot() | {"reason": reason},
        )
        return after
