"""Applying a catalog document: idempotent, all or nothing, new versions for new terms."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from accrual.cli import documents
from accrual.domain.errors import AccrualError
from accrual.services import catalog, tenants
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database
from tests.support import count_rows

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ALICE, BOB = Actor.cli("alice"), Actor.cli("bob")
SCENARIOS = sorted((Path(__file__).resolve().parents[4] / "scenarios").rglob("*.yaml"))

DOCUMENT: dict[str, Any] = {
    "meters": [
        {"code": "api_calls", "aggregation": "count"},
        {"code": "gb", "aggregation": "weighted_sum", "field": "gb"},
    ],
    "taxes": [{"code": "VAT20", "rate": "20", "inclusive": False}],
    "plans": [
        {
            "code": "pro",
            "currency": "USD",
            "interval": "month",
            "tax_rates": ["VAT20"],
            "charges": [
                {"code": "base", "model": "flat", "amount": "50.00", "timing": "in_advance"},
                {
                    "code": "calls",
                    "meter": "api_calls",
                    "model": "graduated",
                    "tiers": [
                        {"up_to": 10, "unit_amount": "10", "flat_amount": "2"},
                        {"up_to": None, "unit_amount": "5", "flat_amount": "3"},
                    ],
                },
            ],
        }
    ],
    "coupons": [{"code": "WELCOME", "kind": "percentage", "value": "10", "duration": "once"}],
}


def _apply(db: Database, tid: Any, document: dict[str, Any], actor: Actor = ALICE) -> dict[str, str]:
    return {
        f"{r.kind}:{r.code}": r.outcome
        for r in catalog.apply_catalog(db, tenant_id=tid, document=document, actor=actor, now=NOW)
    }


def _writes(db: Database, tid: Any) -> tuple[int, ...]:
    return tuple(count_rows(db, t, tid) for t in ("meters", "plans", "plan_versions", "coupons", "audit_log"))


def test_apply_creates_then_changes_nothing(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    first = _apply(db, tid, DOCUMENT)
    assert first == {
        "meter:api_calls": "created",
        "meter:gb": "created",
        "tax_rate:VAT20": "created",
        "plan:pro": "created, version 1 published",
        "coupon:WELCOME": "created",
    }
    writes = _writes(db, tid)
    second = _apply(db, tid, DOCUMENT)
    assert set(second.values()) == {"unchanged"}
    assert _writes(db, tid) == writes


def test_new_terms_publish_a_new_version(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    _apply(db, tid, DOCUMENT)
    changed = copy.deepcopy(DOCUMENT)
    changed["plans"][0]["charges"][0]["amount"] = "60.00"
    assert _apply(db, tid, changed)["plan:pro"] == "version 2 published"
    plan = catalog.get_plan(db, tenant_id=tid, code="pro")
    assert plan.current is not None
    assert plan.current.row.version == 2
    assert _apply(db, tid, changed)["plan:pro"] == "unchanged"


def test_under_maker_checker_apply_submits_for_approval(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    tenants.update_tenant(db, tenant_id=tid, maker_checker=True, actor=BOB, now=NOW)
    assert _apply(db, tid, DOCUMENT)["plan:pro"] == "created, version 1 pending_approval"
    assert _apply(db, tid, DOCUMENT)["plan:pro"] == "unchanged"
    changed = copy.deepcopy(DOCUMENT)
    changed["plans"][0]["charges"][0]["amount"] = "60.00"
    with pytest.raises(AccrualError, match="awaits approval"):
        _apply(db, tid, changed)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["plans"][0].update(currency="EUR"), "/plans/0/currency"),
        (lambda d: d["coupons"][0].update(value="15"), "/coupons/0/value"),
        (lambda d: d["taxes"][0].update(rate="21"), "/taxes/0/rate"),
    ],
)
def test_terms_that_never_change_are_refused(
    db: Database, tenant: CreatedTenant, mutate: Any, field: str
) -> None:
    tid = tenant.tenant.tenant_id
    _apply(db, tid, DOCUMENT)
    changed = copy.deepcopy(DOCUMENT)
    mutate(changed)
    writes = _writes(db, tid)
    with pytest.raises(AccrualError) as caught:
        _apply(db, tid, changed)
    assert caught.value.field == field
    assert _writes(db, tid) == writes


def test_one_bad_object_writes_nothing(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    bad = copy.deepcopy(DOCUMENT)
    bad["plans"][0]["charges"][1]["tiers"][0]["up_to"] = 0
    writes = _writes(db, tid)
    with pytest.raises(AccrualError) as caught:
        _apply(db, tid, bad)
    assert caught.value.field == "/plans/0/charges/1/tiers/0/up_to"
    assert _writes(db, tid) == writes
    unknown_meter = copy.deepcopy(DOCUMENT)
    unknown_meter["plans"][0]["charges"][1]["meter"] = "nope"
    with pytest.raises(catalog.UnknownReference) as caught:
        _apply(db, tid, unknown_meter)
    assert caught.value.field == "/plans/0/charges/1/meter"
    assert _writes(db, tid) == writes


def test_duplicate_codes_in_a_document_are_refused(db: Database, tenant: CreatedTenant) -> None:
    doubled = copy.deepcopy(DOCUMENT)
    doubled["meters"].append({"code": "api_calls", "aggregation": "count"})
    with pytest.raises(AccrualError) as caught:
        _apply(db, tenant.tenant.tenant_id, doubled)
    assert caught.value.field == "/meters/2/code"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_scenario_catalog_applies_idempotently(db: Database, tenant: CreatedTenant, path: Path) -> None:
    document = documents.load(path).data["catalog"]
    tid = tenant.tenant.tenant_id
    _apply(db, tid, document)
    assert set(_apply(db, tid, document).values()) == {"unchanged"}
