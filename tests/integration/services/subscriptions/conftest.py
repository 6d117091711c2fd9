"""A tenant with a catalog and a test clock, for subscription tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.services import catalog, customers, subscriptions, test_clocks
from accrual.services.registry import default_registry
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database

ACTOR = Actor.cli("tests")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

CATALOG: dict[str, Any] = {
    "meters": [{"code": "calls", "aggregation": "count"}],
    "plans": [
        {
            "code": "basic",
            "currency": "USD",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "31.00"}],
        },
        {
            "code": "premium",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"code": "base", "model": "flat", "amount": "62.00"},
                {"code": "calls", "meter": "calls", "model": "per_unit", "amount": "0.01"},
            ],
        },
        {
            "code": "arrears",
            "currency": "USD",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "100", "timing": "in_arrears"}],
        },
        {
            "code": "yearly",
            "currency": "USD",
            "interval": "year",
            "charges": [{"code": "base", "model": "flat", "amount": "365.00"}],
        },
        {
            "code": "trial",
            "currency": "USD",
            "interval": "month",
            "trial_days": 14,
            "charges": [{"code": "base", "model": "flat", "amount": "20.00"}],
        },
        {
            "code": "euro",
            "currency": "EUR",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "10"}],
        },
    ],
}


@dataclasses.dataclass
class World:
    db: Database
    tenant_id: uuid.UUID
    clock_id: uuid.UUID

    def customer(self, external_id: str = "acme", **spec: Any) -> customers.CustomerView:
        return customers.create_customer(
            self.db,
            tenant_id=self.tenant_id,
            spec={"external_id": external_id, "currency": "USD", **spec},
            test_clock_id=self.clock_id,
            actor=ACTOR,
            now=T0,
        )

    def subscribe(self, **spec: Any) -> subscriptions.SubscriptionView:
        spec.setdefault("customer", "acme")
        return subscriptions.create_subscription(
            self.db, tenant_id=self.tenant_id, spec=spec, actor=ACTOR, now=T0
        )

    def advance(self, to: dt.datetime) -> test_clocks.Advance:
        return test_clocks.advance_test_clock(
            self.db,
            tenant_id=self.tenant_id,
            test_clock_id=self.clock_id,
            to=to,
            registry=default_registry(),
            actor=ACTOR,
            now=T0,
        )

    def get(self, view: subscriptions.SubscriptionView) -> subscriptions.SubscriptionView:
        return subscriptions.get_subscription(
            self.db, tenant_id=self.tenant_id, subscription_id=view.subscription_id
        )

    def points(self, view: subscriptions.SubscriptionView) -> list[tuple[str, str, list[str]]]:
        """(reason, at, fee line amounts) of each billing point, in order."""
        rows = subscriptions.billing_points(
            self.db, tenant_id=self.tenant_id, subscription_id=view.subscription_id
        )
        return [(r.reason, r.at.isoformat(), [line["amount"] for line in r.fee_lines]) for r in rows]

    def count(self, table: str) -> int:
        with self.db.connect() as conn:
            return int(
                conn.execute(
                    sa.text(f"select count(*) from {table} where tenant_id = :t"),
                    {"t": self.tenant_id},
                ).scalar_one()
            )


@pytest.fixture
def world(db: Database, tenant: CreatedTenant) -> World:
    tid = tenant.tenant.tenant_id
    catalog.apply_catalog(db, tenant_id=tid, document=CATALOG, actor=ACTOR, now=T0)
    clock = test_clocks.create_test_clock(db, tenant_id=tid, name="sim", frozen_time=T0, actor=ACTOR, now=T0)
    return World(db, tid, clock.test_clock_id)
