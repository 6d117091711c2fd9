"""Billing run: N active subscriptions reach one period end; how fast do their invoices appear?

Three plans of three charges each (flat fees in advance and in arrears, per-unit, graduated,
volume and package usage prices), customers taxed, half the subscriptions with usage. The
subscriptions are made through the services once per plan, then cloned in SQL (the setup is
not what is measured). The run is the worker's: renewals (the lifecycle's billing points),
then the billing of every point into a finalized, numbered invoice.

    .venv/bin/python bench/billing_run.py [N]        # N defaults to 100000

Ends with `billing_run subscriptions=… invoices_per_s=… statements_per_invoice=…`, where
invoices_per_s counts the billing of points into invoices and renewals_per_s the lifecycle
step before it; end_to_end_per_s is both.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any

import sqlalchemy as sa

from accrual.services import catalog, customers, subscriptions, tenants
from accrual.services.billing.due import BillingPointsDue
from accrual.services.due_work import ClockScope
from accrual.services.subscriptions import SubscriptionDueWork
from accrual.store import migrate, usage_rollups
from accrual.store import usage as usage_store
from accrual.store.database import Database
from support import ACTOR, bench_database

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
EVENTS_PER_SUBSCRIPTION = 6

TIERS = [
    {"up_to": 3, "unit_amount": "0.50", "flat_amount": "1"},
    {"up_to": None, "unit_amount": "0.25", "flat_amount": "0"},
]
CATALOG: dict[str, Any] = {
    "meters": [
        {"code": "calls", "aggregation": "count"},
        {"code": "gb", "aggregation": "sum", "field": "gb"},
    ],
    "taxes": [{"code": "VAT", "rate": "20"}],
    "plans": [
        {
            "code": "starter",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"code": "base", "model": "flat", "amount": "29"},
                {"code": "ops", "model": "flat", "amount": "5", "timing": "in_arrears"},
                {"code": "calls", "meter": "calls", "model": "per_unit", "amount": "0.05"},
            ],
        },
        {
            "code": "growth",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"code": "base", "model": "flat", "amount": "99"},
                {"code": "calls", "meter": "calls", "model": "graduated", "tiers": TIERS},
                {"code": "gb", "meter": "gb", "model": "per_unit", "amount": "0.10"},
            ],
        },
        {
            "code": "scale",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"code": "base", "model": "flat", "amount": "499", "timing": "in_arrears"},
                {"code": "calls", "meter": "calls", "model": "volume", "tiers": TIERS},
                {
                    "code": "gb",
                    "meter": "gb",
                    "model": "package",
                    "package_size": "10",
                    "package_amount": "3",
                },
            ],
        },
    ],
}

CLONE = """
WITH n AS (SELECT g FROM generate_series(1, :count) g),
made AS (
    INSERT INTO customers (tenant_id, customer_id, external_id, name, email, currency, timezone,
        billing_address,
                           tax_rates, grace_period_days, payment_method, metadata, test_clock_id, created_at,
                           updated_at, payment_terms_days)
    SELECT c.tenant_id, gen_random_uuid(), c.external_id || '-' || n.g, c.name, c.email, c.currency,
        c.timezone,
           c.billing_address, c.tax_rates, c.grace_period_days, c.payment_method, c.metadata, c.test_clock_id,
           c.created_at, c.updated_at, c.payment_terms_days
      FROM customers c, n WHERE c.tenant_id = :t AND c.customer_id = :c
    RETURNING customer_id, external_id
)
INSERT INTO subscriptions (tenant_id, subscription_id, external_id, customer_id, plan_id,
    plan_version_id, status,
                           quantity, billing, trial_end_behavior, start_at, anchor, trial_end,
                               current_period_start,
                           current_period_end, segments, advance_billed, cancel_at_period_end,
                               canceled_at, paused_at,
                           ended_at, prior_status, coupon_id, metadata, test_clock_id, next_due_at,
                               lock_version,
                           usage_closed_until, usage_grid_offset_us, created_at, updated_at)
SELECT s.tenant_id, gen_random_uuid(), s.external_id || '-' || split_part(made.external_id, '-', 2),
    made.customer_id,
       s.plan_id, s.plan_version_id, s.status, s.quantity, s.billing, s.trial_end_behavior, s.start_at,
           s.anchor,
       s.trial_end, s.current_period_start, s.current_period_end, s.segments, s.advance_billed,
       s.cancel_at_period_end, s.canceled_at, s.paused_at, s.ended_at, s.prior_status, s.coupon_id,
           s.metadata,
       s.test_clock_id, s.next_due_at, s.lock_version, s.usage_closed_until, s.usage_grid_offset_us,
       s.created_at + make_interval(secs => split_part(made.external_id, '-', 2)::int / 1000.0), s.updated_at
  FROM subscriptions s, made WHERE s.tenant_id = :t AND s.subscription_id = :s
"""

USAGE = """
INSERT INTO usage_events (tenant_id, subscription_id, meter_id, ts, bucket, event_id, properties,
    received_at, late)
SELECT s.tenant_id, s.subscription_id, m.meter_id, ts, date_trunc('hour', ts),
       s.subscription_id::text || '-' || m.code || '-' || k, jsonb_build_object('gb', k), :start, false
  FROM subscriptions s
  JOIN meters m ON m.tenant_id = s.tenant_id
  CROSS JOIN generate_series(1, :per) k
  CROSS JOIN LATERAL (SELECT :start + make_interval(days => k * 3, hours => k) AS ts) t
 WHERE s.tenant_id = :t AND abs(hashtext(s.external_id)) % 2 = 0
"""


def setup(db: Database, count: int) -> Any:
    created = tenants.create_tenant(db, name="bench", timezone="UTC", actor=ACTOR, now=START)
    tid = created.tenant.tenant_id
    catalog.apply_catalog(db, tenant_id=tid, document=CATALOG, actor=ACTOR, now=START)
    plans = [plan["code"] for plan in CATALOG["plans"]]
    for i, plan in enumerate(plans):
        customers.create_customer(
            db,
            tenant_id=tid,
            spec={"external_id": f"c{i}", "currency": "USD", "tax_rates": ["VAT"]},
            test_clock_id=None,
            actor=ACTOR,
            now=START,
        )
        subscriptions.create_subscription(
            db,
            tenant_id=tid,
            spec={"external_id": f"s{i}-template", "customer": f"c{i}", "plan": plan, "billing": "calendar"},
            actor=ACTOR,
            now=START,
        )
    with db.transaction() as conn:
        # The templates' first invoices are not part of the run.
        conn.execute(
            sa.text("update subscriptions set advance_billed = true where tenant_id = :t"), {"t": tid}
        )
        templates = conn.execute(
            sa.text(
                "select subscription_id, customer_id from subscriptions "
                "where tenant_id = :t order by external_id"
            ),
            {"t": tid},
        ).all()
    BillingPointsDue().run_due(db, scope=ClockScope.real(), at=START)
    # The templates take part in the run too: N in all.
    clones = count - len(plans)
    per_plan = [clones // len(plans) + (1 if i < clones % len(plans) else 0) for i in range(len(plans))]
    for template, how_many in zip(templates, per_plan, strict=True):
        with db.transaction() as conn:
            conn.execute(
                sa.text(CLONE),
                {"t": tid, "c": template.customer_id, "s": template.subscription_id, "count": how_many},
            )
    usage_store.ensure_partitions(db, [START, END])
    with db.transaction() as conn:
        conn.execute(sa.text(USAGE), {"t": tid, "per": EVENTS_PER_SUBSCRIPTION, "start": START})
        conn.execute(sa.text("analyze"))
    with db.transaction() as conn:
        usage_rollups.roll_up(conn, now=START)
    return tid


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with bench_database("accrual_bench_billing_run") as url:
        db = Database(url, pool_size=4)
        migrate.upgrade(db)
        tid = setup(db, count)
        statements = 0

        def counted(*_: object) -> None:
            nonlocal statements
            statements += 1

        sa.event.listen(db.engine, "before_cursor_execute", counted)
        scope = ClockScope.real()
        began = time.perf_counter()
        renewals = 0
        while done := SubscriptionDueWork().run_due(db, scope=scope, at=END):
            renewals += done
        renewed = time.perf_counter()
        renewal_statements = statements
        while BillingPointsDue().run_due(db, scope=scope, at=END):
            pass
        billed = time.perf_counter()
        with db.connect() as conn:
            invoices = conn.execute(
                sa.text(
                    "select count(*) from invoices "
                    "where tenant_id = :t and number is not null and created_at = :e"
                ),
                {"t": tid, "e": END},
            ).scalar_one()
        db.dispose()
    billing_seconds = billed - renewed
    print(
        f"renewals={renewals} in {renewed - began:.1f} s; invoices={invoices} in {billing_seconds:.1f} s",
        file=sys.stderr,
    )
    print(
        f"billing_run subscriptions={count} invoices_per_s={invoices / billing_seconds:.0f} "
        f"statements_per_invoice={(statements - renewal_statements) / max(invoices, 1):.3f} "
        f"renewals_per_s={renewals / (renewed - began):.0f} "
        f"end_to_end_per_s={invoices / (billed - began):.0f}"
    )


if __name__ == "__main__":
    main()
