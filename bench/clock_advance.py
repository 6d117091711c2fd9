"""Benchmark: advancing a test clock 365 days with 1,000 subscriptions on it.

Every subscription renews monthly (some calendar, some anniversary, a few with trials), so
the advance runs about 12,000 lifecycle transitions, each in its own transaction with its
history row, billing point, audit record and outbox events. The baseline, measured in the
same run, is the same number of bare transactions that each lock a subscription row and
update it, so the ratio shows what the lifecycle's bookkeeping costs.

Run: .venv/bin/python bench/clock_advance.py [--subscriptions 1000] [--days 365]
Uses ACCRUAL_BENCH_DATABASE_URL or ACCRUAL_DATABASE_URL (a server;
database `accrual_bench` is created there),
otherwise an embedded PostgreSQL under .accrual/bench-pgdata.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import time

import sqlalchemy as sa

from accrual.services import catalog, customers, subscriptions, tenants, test_clocks
from accrual.services.registry import default_registry
from accrual.services.unit_of_work import Actor
from accrual.store import migrate
from accrual.store.database import Database
from support import bench_database

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ACTOR = Actor.system("bench")
CATALOG = {
    "meters": [{"code": "calls", "aggregation": "count"}],
    "plans": [
        {
            "code": "basic",
            "currency": "USD",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "29"}],
        },
        {
            "code": "usage",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"code": "base", "model": "flat", "amount": "10", "timing": "in_arrears"},
                {"code": "calls", "meter": "calls", "model": "per_unit", "amount": "0.001"},
            ],
        },
        {
            "code": "trial",
            "currency": "USD",
            "interval": "month",
            "trial_days": 14,
            "charges": [{"code": "base", "model": "flat", "amount": "49"}],
        },
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()

    stack = contextlib.ExitStack()
    db = Database(stack.enter_context(bench_database("accrual_bench")), pool_size=4)
    try:
        migrate.upgrade(db)
        tid = tenants.create_tenant(db, name="bench", timezone="UTC", actor=ACTOR, now=T0).tenant.tenant_id
        catalog.apply_catalog(db, tenant_id=tid, document=CATALOG, actor=ACTOR, now=T0)
        clock = test_clocks.create_test_clock(
            db, tenant_id=tid, name="year", frozen_time=T0, actor=ACTOR, now=T0
        )
        started = time.perf_counter()
        plans = ["basic", "usage", "basic", "trial"]
        for i in range(args.subscriptions):
            customers.create_customer(
                db,
                tenant_id=tid,
                spec={
                    "external_id": f"c{i}",
                    "currency": "USD",
                    "timezone": ["UTC", "Europe/Paris", "Asia/Tokyo"][i % 3],
                },
                test_clock_id=clock.test_clock_id,
                actor=ACTOR,
                now=T0,
            )
            subscriptions.create_subscription(
                db,
                tenant_id=tid,
                spec={
                    "customer": f"c{i}",
                    "plan": plans[i % 4],
                    "billing": "calendar" if i % 2 else "anniversary",
                },
                actor=ACTOR,
                now=T0,
            )
        setup_s = time.perf_counter() - started

        started = time.perf_counter()
        advance = test_clocks.advance_test_clock(
            db,
            tenant_id=tid,
            test_clock_id=clock.test_clock_id,
            to=T0 + dt.timedelta(days=args.days),
            registry=default_registry(),
            actor=ACTOR,
            now=T0,
        )
        advance_s = time.perf_counter() - started
        transitions = sum(step.items for step in advance.steps)

        # Baseline: as many bare lock-and-update transactions on the same rows.
        with db.connect() as conn:
            ids = list(
                conn.execute(
                    sa.text("select subscription_id from subscriptions where tenant_id = :t"), {"t": tid}
                ).scalars()
            )
        started = time.perf_counter()
        for n in range(transitions):
            with db.transaction() as conn:
                sid = ids[n % len(ids)]
                conn.execute(
                    sa.text("select * from subscriptions where subscription_id = :s for update"), {"s": sid}
                )
                conn.execute(
                    sa.text(
                        "update subscriptions set lock_version = lock_version + 1 where subscription_id = :s"
                    ),
                    {"s": sid},
                )
        baseline_s = time.perf_counter() - started
        print(
            f"clock_advance subscriptions={args.subscriptions} days={args.days} "
            f"transitions={transitions} setup_s={setup_s:.1f} advance_s={advance_s:.1f} "
            f"transitions_per_s={transitions / advance_s:.0f} "
            f"baseline_per_s={transitions / baseline_s:.0f} ratio={baseline_s / advance_s:.2f}"
        )
    finally:
        db.dispose()
        stack.close()


if __name__ == "__main__":
    main()
