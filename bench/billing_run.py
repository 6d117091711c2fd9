"""Billing run: N active subscriptions reach one period end; how fast do their invoices appear?

Three plans of three charges each (flat fees in advance and in arrears, per-unit, graduated,
volume and package usage prices), customers taxed, half the subscriptions with usage. The
subscriptions are made through the services once per plan, then cloned in SQL (the setup is
not what is measured). The run is the worker's: renewals (the lifecycle's billing points),
then the billing of every point into a finalized, numbered invoice (in the run's two lane
processes, as the worker bills them).

    .venv/bin/python bench/billing_run.py [N]        # N defaults to 100000

Ends with `billing_run subscriptions=… invoices_per_s=… statements_per_invoice=…`, where
invoices_per_s counts the billing of points into invoices and renewals_per_s the lifecycle
step before it; end_to_end_per_s is both.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import uuid
from typing import Any

import sqlalchemy as sa

from accrual.services import catalog, customers, subscriptions, tenants
from accrual.services.billing import lanes
from accrual.services.billing.due import BillingPointsDue
from accrual.services.due_work import ClockScope
from accrual.services.subscriptions import SubscriptionDueWork
from accrual.services.usage import maintenance
from accrual.store import migrate, schema
from accrual.store import usage as usage_store
from accrual.store.database import Database, insert_rows
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


def clone(db: Database, tid: Any, subscription_id: Any, count: int) -> None:
    """`count` copies of a subscription and its customer, as if each had been made on its own."""
    with db.transaction() as conn:
        sub = conn.execute(
            sa.select(schema.subscriptions).where(
                schema.subscriptions.c.tenant_id == tid,
                schema.subscriptions.c.subscription_id == subscription_id,
            )
        ).one()
        customer = conn.execute(
            sa.select(schema.customers).where(
                schema.customers.c.tenant_id == tid, schema.customers.c.customer_id == sub.customer_id
            )
        ).one()
    customer_ids = [uuid.uuid4() for _ in range(count)]
    for start in range(0, count, 10_000):
        with db.transaction() as conn:
            insert_rows(
                conn,
                schema.customers,
                [
                    dict(customer._mapping)
                    | {"customer_id": cid, "external_id": f"{customer.external_id}-{n}"}
                    for n, cid in enumerate(customer_ids[start : start + 10_000], start=start)
                ],
            )
    # Foreign-key checks plan their lookups once per connection: plan them on a table with its
    # real size, or each check scans what it believes is a handful of rows.
    with db.transaction() as conn:
        conn.execute(sa.text("analyze customers"))
    db.engine.dispose()
    for start in range(0, count, 10_000):
        with db.transaction() as conn:
            insert_rows(
                conn,
                schema.subscriptions,
                [
                    dict(sub._mapping)
                    | {
                        "subscription_id": uuid.uuid4(),
                        "external_id": f"{sub.external_id}-{n}",
                        "customer_id": cid,
                        "created_at": sub.created_at + dt.timedelta(microseconds=n),
                    }
                    for n, cid in enumerate(customer_ids[start : start + 10_000], start=start)
                ],
            )


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
        clone(db, tid, template.subscription_id, how_many)
    usage_store.ensure_partitions(db, [START, END])
    with db.transaction() as conn:
        conn.execute(sa.text(USAGE), {"t": tid, "per": EVENTS_PER_SUBSCRIPTION, "start": START})
        conn.execute(sa.text("analyze"))
    # The worker's rollup pass: events folded, and the BRIN index on xact summarized.
    maintenance.roll_up(db, now=START)
    return tid


BASELINE = """
CREATE TEMP TABLE baseline_invoices (LIKE invoices INCLUDING DEFAULTS);
CREATE TEMP TABLE baseline_lines (LIKE invoice_lines INCLUDING DEFAULTS);
INSERT INTO baseline_invoices (tenant_id, invoice_id, customer_id, reason, status, currency, created_at,
                               updated_at, subtotal, total, amount_due)
SELECT tenant_id, gen_random_uuid(), customer_id, 'boundary', 'open', 'USD', :e, :e, 100, 100, 100
  FROM subscriptions WHERE tenant_id = :t;
INSERT INTO baseline_lines (tenant_id, invoice_id, line_no, kind, description, quantity, amount, discount,
                            tax, taxes, details)
SELECT i.tenant_id, i.invoice_id, n, 'fee', 'a line', 1, 100, 0, 20, '[]', '{}'
  FROM baseline_invoices i, generate_series(1, 3) n;
"""


def baseline(db: Database, tid: Any) -> float:
    """Invoices per second the database takes as bare rows: the same count of invoice rows and
    three lines each, written by INSERT ... SELECT with nothing computed."""
    began = time.perf_counter()
    with db.transaction() as conn:
        for statement in BASELINE.split(";"):
            if statement.strip():
                conn.execute(sa.text(statement), {"t": tid, "e": END})
        count = conn.execute(sa.text("select count(*) from baseline_invoices")).scalar_one()
    return float(count) / (time.perf_counter() - began)


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
        # Batches billed in the run's lane processes ran their statements there.
        statements += lanes.statements(db)
        with db.connect() as conn:
            invoices = conn.execute(
                sa.text(
                    "select count(*) from invoices "
                    "where tenant_id = :t and number is not null and created_at = :e"
                ),
                {"t": tid, "e": END},
            ).scalar_one()
        floor = baseline(db, tid)
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
        f"end_to_end_per_s={invoices / (billed - began):.0f} "
        f"baseline_rows_per_s={floor:.0f} ratio={invoices / billing_seconds / floor:.3f}"
    )


if __name__ == "__main__":
    main()
