"""Plans and versions: drafts are edited, publishing freezes a version, and PostgreSQL enforces it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.domain import plans as plan_rules
from accrual.services import catalog, tenants
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store.catalog import CodeTaken
from accrual.store.database import Database
from tests.support import count_rows

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ALICE, BOB = Actor.cli("alice"), Actor.cli("bob")

PRO: dict[str, Any] = {
    "code": "pro",
    "currency": "USD",
    "interval": "month",
    "charges": [
        {"code": "base", "model": "flat", "amount": "50.00"},
        {"code": "calls", "meter": "api_calls", "model": "per_unit", "amount": "0.05"},
    ],
}


@pytest.fixture
def tid(db: Database, tenant: CreatedTenant) -> Any:
    tenant_id = tenant.tenant.tenant_id
    catalog.create_meter(
        db, tenant_id=tenant_id, spec={"code": "api_calls", "aggregation": "count"}, actor=ALICE, now=NOW
    )
    return tenant_id


def test_create_publish_and_read_back(db: Database, tid: Any) -> None:
    plan = catalog.create_plan(db, tenant_id=tid, spec=PRO, publish=True, actor=ALICE, now=NOW)
    assert plan.current is not None
    assert plan.current.row.version == 1
    assert plan.open_version is None
    assert [c.code for c in plan.current.row.charges] == ["base", "calls"]
    assert plan.current.row.charges[1].meter_code == "api_calls"
    terms = plan.current.terms()
    assert terms.interval.unit.value == "month"
    assert plan.current.row.published_by == str(ALICE)


def test_draft_is_editable_then_frozen(db: Database, tid: Any) -> None:
    plan = catalog.create_plan(db, tenant_id=tid, spec=PRO, publish=False, actor=ALICE, now=NOW)
    assert plan.open_version is not None
    assert plan.open_version.status is plan_rules.VersionStatus.DRAFT
    cheaper = {"interval": "month", "charges": [{"code": "base", "model": "flat", "amount": "40.00"}]}
    draft = catalog.update_draft(db, tenant_id=tid, code="pro", terms=cheaper, actor=ALICE, now=NOW)
    assert [c.code for c in draft.row.charges] == ["base"]
    published = catalog.publish_version(db, tenant_id=tid, code="pro", version=1, actor=ALICE, now=NOW)
    assert published.status is plan_rules.VersionStatus.PUBLISHED
    with pytest.raises(plan_rules.VersionNotEditable):
        catalog.update_draft(db, tenant_id=tid, code="pro", terms=cheaper, actor=ALICE, now=NOW)
    with pytest.raises(plan_rules.VersionNotEditable):
        catalog.publish_version(db, tenant_id=tid, code="pro", version=1, actor=ALICE, now=NOW)


def test_a_change_is_a_new_version(db: Database, tid: Any) -> None:
    catalog.create_plan(db, tenant_id=tid, spec=PRO, publish=True, actor=ALICE, now=NOW)
    draft = catalog.create_draft(db, tenant_id=tid, code="pro", terms=None, actor=ALICE, now=NOW)
    assert draft.row.version == 2
    assert (
        draft.row.terms_spec()
        == catalog.get_plan_version(db, tenant_id=tid, code="pro", version=1).row.terms_spec()
    )
    with pytest.raises(plan_rules.VersionNotEditable):
        catalog.create_draft(db, tenant_id=tid, code="pro", terms=None, actor=ALICE, now=NOW)
    terms = {"interval": "month", "charges": [{"code": "base", "model": "flat", "amount": "60.00"}]}
    catalog.update_draft(db, tenant_id=tid, code="pro", terms=terms, actor=ALICE, now=NOW)
    catalog.publish_version(db, tenant_id=tid, code="pro", version=2, actor=ALICE, now=NOW)
    plan = catalog.get_plan(db, tenant_id=tid, code="pro")
    assert plan.current is not None
    assert plan.current.row.version == 2
    v1 = catalog.get_plan_version(db, tenant_id=tid, code="pro", version=1)
    assert v1.row.charges[0].spec["amount"] == "50.00"  # the old version is untouched


def test_publishing_nothing_is_refused(db: Database, tid: Any) -> None:
    catalog.create_plan(db, tenant_id=tid, spec=PRO | {"charges": []}, publish=False, actor=ALICE, now=NOW)
    with pytest.raises(plan_rules.NothingToPublish):
        catalog.publish_version(db, tenant_id=tid, code="pro", version=1, actor=ALICE, now=NOW)


def test_unknown_meter_is_named_and_nothing_is_written(db: Database, tid: Any) -> None:
    spec = PRO | {"charges": [{"code": "gb", "meter": "storage", "model": "per_unit", "amount": "1"}]}
    before = count_rows(db, "plans", tid), count_rows(db, "audit_log", tid)
    with pytest.raises(catalog.UnknownReference) as caught:
        catalog.create_plan(db, tenant_id=tid, spec=spec, publish=True, actor=ALICE, now=NOW)
    assert caught.value.field == "/charges/0/meter"
    assert (count_rows(db, "plans", tid), count_rows(db, "audit_log", tid)) == before


@pytest.mark.parametrize(
    "statement",
    [
        "update plan_versions set trial_days = 30 where tenant_id = :t",
        "update plan_versions set status = 'draft' where tenant_id = :t",
        "delete from plan_versions where tenant_id = :t",
        "update charges set spec = jsonb_set(spec, '{amount}', '\"0.01\"') where tenant_id = :t",
        "delete from charges where tenant_id = :t",
        "insert into charges select tenant_id, gen_random_uuid(), plan_version_id, 9, 'extra', model, "
        "timing, meter_id, spec from charges where tenant_id = :t and code = 'calls'",
        "update plans set currency = 'EUR' where tenant_id = :t",
    ],
)
def test_the_database_refuses_to_change_a_published_version(db: Database, tid: Any, statement: str) -> None:
    catalog.create_plan(db, tenant_id=tid, spec=PRO, publish=True, actor=ALICE, now=NOW)
    with pytest.raises(sa.exc.DBAPIError) as caught, db.transaction() as conn:
        conn.execute(sa.text(statement), {"t": tid})
    assert getattr(caught.value.orig, "sqlstate", None) == "AC001"


def test_maker_checker_needs_a_second_person(db: Database, tenant: CreatedTenant, tid: Any) -> None:
    tenants.update_tenant(db, tenant_id=tid, maker_checker=True, actor=ALICE, now=NOW)
    catalog.create_plan(db, tenant_id=tid, spec=PRO, publish=False, actor=ALICE, now=NOW)
    submitted = catalog.publish_version(db, tenant_id=tid, code="pro", version=1, actor=ALICE, now=NOW)
    assert submitted.status is plan_rules.VersionStatus.PENDING_APPROVAL
    assert catalog.get_plan(db, tenant_id=tid, code="pro").current is None
    with pytest.raises(plan_rules.VersionNotEditable):
        catalog.update_draft(db, tenant_id=tid, code="pro", terms={"interval": "year"}, actor=ALICE, now=NOW)
    with pytest.raises(plan_rules.SelfApproval):
        catalog.approve_version(db, tenant_id=tid, code="pro", version=1, actor=ALICE, now=NOW)
    approved = catalog.approve_version(db, tenant_id=tid, code="pro", version=1, actor=BOB, now=NOW)
    assert approved.status is plan_rules.VersionStatus.PUBLISHED
    assert (approved.row.submitted_by, approved.row.published_by) == (str(ALICE), str(BOB))
    with db.connect() as conn:
        trail = conn.execute(
            sa.text(
                "select action, actor from audit_log "
                "where tenant_id = :t and entity_type = 'plan_version' order by seq"
            ),
            {"t": tid},
        ).all()
    assert [(r.action, r.actor) for r in trail] == [
        ("plan_version.created", "cli:alice"),
        ("plan_version.submitted", "cli:alice"),
        ("plan_version.published", "cli:bob"),
    ]


def test_a_rejected_version_goes_back_to_draft(db: Database, tid: Any) -> None:
    tenants.update_tenant(db, tenant_id=tid, maker_checker=True, actor=ALICE, now=NOW)
    catalog.create_plan(db, tenant_id=tid, spec=PRO, publish=True, actor=ALICE, now=NOW)
    rejected = catalog.reject_version(
        db, tenant_id=tid, code="pro", version=1, reason="base fee too low", actor=BOB, now=NOW
    )
    assert rejected.status is plan_rules.VersionStatus.DRAFT
    edited = catalog.update_draft(
        db,
        tenant_id=tid,
        code="pro",
        terms={"interval": "month", "charges": [{"code": "base", "model": "flat", "amount": "55"}]},
        actor=ALICE,
        now=NOW,
    )
    assert edited.row.charges[0].spec["amount"] == "55"


def test_archived_meters_cannot_be_used_anew(db: Database, tid: Any) -> None:
    catalog.archive_meter(db, tenant_id=tid, code="api_calls", actor=ALICE, now=NOW)
    with pytest.raises(catalog.UnknownReference, match="archived"):
        catalog.create_plan(db, tenant_id=tid, spec=PRO, publish=False, actor=ALICE, now=NOW)


def test_plan_codes_are_unique_per_tenant(db: Database, tid: Any, other_tenant: CreatedTenant) -> None:
    catalog.create_plan(db, tenant_id=tid, spec=PRO | {"charges": []}, publish=False, actor=ALICE, now=NOW)
    with pytest.raises(CodeTaken):
        catalog.create_plan(
            db, tenant_id=tid, spec=PRO | {"charges": []}, publish=False, actor=ALICE, now=NOW
        )
    other = other_tenant.tenant.tenant_id
    catalog.create_plan(db, tenant_id=other, spec=PRO | {"charges": []}, publish=False, actor=ALICE, now=NOW)
