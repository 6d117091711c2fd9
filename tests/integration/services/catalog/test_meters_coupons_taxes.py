"""Meters, coupons and tax rates: what may change, what may not, and why."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.domain import meters
from accrual.services import catalog
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ALICE = Actor.cli("alice")


@pytest.fixture
def tid(tenant: CreatedTenant) -> Any:
    return tenant.tenant.tenant_id


def _plan_using(db: Database, tid: Any, meter: str, *, publish: bool) -> None:
    spec = {
        "code": f"uses-{meter}",
        "currency": "USD",
        "interval": "month",
        "charges": [{"code": "usage", "meter": meter, "model": "per_unit", "amount": "1"}],
    }
    catalog.create_plan(db, tenant_id=tid, spec=spec, publish=publish, actor=ALICE, now=NOW)


def test_meter_counting_rules_change_freely_until_published(db: Database, tid: Any) -> None:
    catalog.create_meter(
        db, tenant_id=tid, spec={"code": "gb", "aggregation": "sum", "field": "gb"}, actor=ALICE, now=NOW
    )
    _plan_using(db, tid, "gb", publish=False)
    changed = catalog.update_meter(
        db, tenant_id=tid, code="gb", changes={"aggregation": "max"}, actor=ALICE, now=NOW
    )
    assert changed.definition.aggregation is meters.Aggregation.MAX


def test_a_meter_in_use_keeps_what_it_counts(db: Database, tid: Any) -> None:
    catalog.create_meter(
        db, tenant_id=tid, spec={"code": "gb", "aggregation": "sum", "field": "gb"}, actor=ALICE, now=NOW
    )
    _plan_using(db, tid, "gb", publish=True)
    with pytest.raises(meters.MeterInUse) as caught:
        catalog.update_meter(
            db, tenant_id=tid, code="gb", changes={"aggregation": "max"}, actor=ALICE, now=NOW
        )
    assert caught.value.field == "/aggregation"
    assert "uses-gb v1" in caught.value.detail
    assert "new meter" in caught.value.detail
    with pytest.raises(meters.MeterInUse) as caught:
        catalog.update_meter(db, tenant_id=tid, code="gb", changes={"field": "bytes"}, actor=ALICE, now=NOW)
    assert caught.value.field == "/field"
    renamed = catalog.update_meter(
        db, tenant_id=tid, code="gb", changes={"name": "Storage"}, actor=ALICE, now=NOW
    )
    assert renamed.definition.name == "Storage"
    # The database refuses it too, whoever asks.
    with pytest.raises(sa.exc.DBAPIError) as refused, db.transaction() as conn:
        conn.execute(
            sa.text("update meters set aggregation = 'max' where tenant_id = :t and code = 'gb'"), {"t": tid}
        )
    assert getattr(refused.value.orig, "sqlstate", None) == "AC001"


def test_meter_filters_and_group_by_round_trip(db: Database, tid: Any) -> None:
    spec = {
        "code": "calls_eu",
        "aggregation": "count",
        "filters": {"region": ["eu", "uk"], "tier": "gold"},
        "group_by": ["endpoint"],
    }
    created = catalog.create_meter(db, tenant_id=tid, spec=spec, actor=ALICE, now=NOW)
    again = catalog.get_meter(db, tenant_id=tid, code="calls_eu")
    assert again.definition == created.definition
    assert dict(created.definition.filters) == {"region": ("eu", "uk"), "tier": ("gold",)}


def test_coupon_terms_are_frozen_but_names_are_not(db: Database, tid: Any) -> None:
    spec = {"code": "WELCOME", "kind": "percentage", "value": "10", "duration": "once"}
    catalog.create_coupon(db, tenant_id=tid, spec=spec, actor=ALICE, now=NOW)
    renamed = catalog.rename_coupon(
        db, tenant_id=tid, code="WELCOME", name="Welcome 10%", actor=ALICE, now=NOW
    )
    assert renamed.coupon.name == "Welcome 10%"
    with pytest.raises(sa.exc.DBAPIError) as refused, db.transaction() as conn:
        conn.execute(
            sa.text("update coupons set spec = jsonb_set(spec, '{value}', '\"90\"') where tenant_id = :t"),
            {"t": tid},
        )
    assert getattr(refused.value.orig, "sqlstate", None) == "AC001"


def test_coupon_restricted_to_an_unknown_plan_is_refused(db: Database, tid: Any) -> None:
    spec = {
        "code": "PRO10",
        "kind": "percentage",
        "value": "10",
        "duration": "once",
        "applies_to": {"plans": ["nope"]},
    }
    with pytest.raises(catalog.UnknownReference) as caught:
        catalog.create_coupon(db, tenant_id=tid, spec=spec, actor=ALICE, now=NOW)
    assert caught.value.field == "/applies_to/plans/0"


def test_tax_rates_never_change_rate(db: Database, tid: Any) -> None:
    created = catalog.create_tax_rate(
        db, tenant_id=tid, spec={"code": "VAT20", "rate": "20", "inclusive": True}, actor=ALICE, now=NOW
    )
    assert str(created.tax_rate.rate) == "20"
    with pytest.raises(sa.exc.DBAPIError), db.transaction() as conn:
        conn.execute(sa.text("update tax_rates set rate = 19 where tenant_id = :t"), {"t": tid})
    archived = catalog.archive_tax_rate(db, tenant_id=tid, code="VAT20", actor=ALICE, now=NOW)
    assert archived.archived_at is not None
    listed = catalog.list_tax_rates(db, tenant_id=tid, include_archived=False, cursor=None, limit=10)
    assert listed.items == []


def test_archiving_is_idempotent(db: Database, tid: Any) -> None:
    catalog.create_meter(db, tenant_id=tid, spec={"code": "c", "aggregation": "count"}, actor=ALICE, now=NOW)
    first = catalog.archive_meter(db, tenant_id=tid, code="c", actor=ALICE, now=NOW)
    later = NOW + dt.timedelta(days=1)
    second = catalog.archive_meter(db, tenant_id=tid, code="c", actor=ALICE, now=later)
    assert first.archived_at == second.archived_at == NOW


def test_unknown_codes_are_not_found(db: Database, tid: Any) -> None:
    for get in (
        catalog.get_meter,
        catalog.get_plan,
        catalog.get_coupon,
        catalog.get_tax_rate,
        catalog.get_product,
    ):
        with pytest.raises(catalog.CatalogObjectNotFound):
            get(db, tenant_id=tid, code="missing")
