"""The billing run's statement count does not grow with the number of subscriptions it bills."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.services import catalog, customers, subscriptions
from accrual.services.billing import due, lanes
from accrual.services.billing.due import BillingPointsDue
from accrual.services.due_work import ClockScope
from accrual.services.subscriptions import SubscriptionDueWork
from accrual.services.tenants import CreatedTenant
from accrual.services.usage import ingest, intake
from accrual.store.database import Database
from tests.integration.services.billing.conftest import ACTOR, spy_on_lanes

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)

CATALOG: dict[str, Any] = {
    "meters": [{"code": "calls", "aggregation": "count"}],
    "taxes": [{"code": "VAT", "rate": "20"}],
    "coupons": [{"code": "TEN", "kind": "percentage", "value": "10", "duration": "forever"}],
    "plans": [
        {
            "code": "pro",
            "currency": "EUR",
            "interval": "month",
            "charges": [
                {"code": "base", "model": "flat", "amount": "29"},
                {"code": "ops", "model": "flat", "amount": "5", "timing": "in_arrears"},
                {"code": "calls", "meter": "calls", "model": "per_unit", "amount": "0.05"},
            ],
        }
    ],
}

# Copies of the template customer and subscription, as if made one by one.
CLONE = """
WITH tpl AS MATERIALIZED (SELECT * FROM subscriptions WHERE tenant_id = :t AND external_id = 'template'),
made AS (
    INSERT INTO customers (tenant_id, customer_id, external_id, name, email, currency, timezone,
        billing_address,
                           tax_rates, grace_period_days, payment_method, metadata, test_clock_id, created_at,
                           updated_at, payment_terms_days)
    SELECT tenant_id, gen_random_uuid(), external_id || '-' || g, name, email, currency, timezone,
        billing_address,
           tax_rates, grace_period_days, payment_method, metadata, test_clock_id, created_at, updated_at,
           payment_terms_days
      FROM customers, generate_series(1, :n) g WHERE tenant_id = :t AND external_id = 'template'
    RETURNING customer_id, external_id
)
INSERT INTO subscriptions (tenant_id, subscription_id, external_id, customer_id, plan_id,
    plan_version_id, status,
                           quantity, billing, trial_end_behavior, start_at, anchor, trial_end,
                               current_period_start,
                           current_period_end, segments, advance_billed, cancel_at_period_end,
                               coupon_id, metadata,
                           test_clock_id, next_due_at, lock_version, usage_grid_offset_us, created_at,
                               updated_at)
SELECT s.tenant_id, gen_random_uuid(), made.external_id, made.customer_id, s.plan_id, s.plan_version_id,
    s.status,
       s.quantity, s.billing, s.trial_end_behavior, s.start_at, s.anchor, s.trial_end, s.current_period_start,
       s.current_period_end, s.segments, s.advance_billed, s.cancel_at_period_end, s.coupon_id, s.metadata,
       s.test_clock_id, s.next_due_at, s.lock_version, s.usage_grid_offset_us, s.created_at, s.updated_at
  FROM tpl s, made
"""


def _set_up(db: Database, tenant: CreatedTenant, count: int) -> ClockScope:
    """`count` subscriptions of one tenant due at END, renewed: their billing points wait."""
    tid = tenant.tenant.tenant_id
    catalog.apply_catalog(db, tenant_id=tid, document=CATALOG, actor=ACTOR, now=START)
    customers.create_customer(
        db,
        tenant_id=tid,
        spec={"external_id": "template", "currency": "EUR", "tax_rates": ["VAT"]},
        test_clock_id=None,
        actor=ACTOR,
        now=START,
    )
    subscriptions.create_subscription(
        db,
        tenant_id=tid,
        spec={
            "external_id": "template",
            "customer": "template",
            "plan": "pro",
            "billing": "calendar",
            "coupon": "TEN",
        },
        actor=ACTOR,
        now=START,
    )
    with db.transaction() as conn:
        conn.execute(
            sa.text("update subscriptions set advance_billed = true where tenant_id = :t"), {"t": tid}
        )
        conn.execute(sa.text(CLONE), {"t": tid, "n": count - 1})
        # The template's start is not part of the run.
        conn.execute(
            sa.text(
                "insert into billing_point_results (tenant_id, billing_point_id, processed_at) "
                "select tenant_id, billing_point_id, :at from billing_points where tenant_id = :t"
            ),
            {"t": tid, "at": START},
        )
    events = intake.parse_events(
        [
            {"id": f"e{i}", "subscription": f"template-{i}", "meter": "calls"}
            for i in range(1, min(count, 50))
        ],
        now=START + dt.timedelta(days=3),
    )
    ingest.ingest(db, tenant_id=tid, events=events, now=START + dt.timedelta(days=3))
    scope = ClockScope(tenant_id=None, test_clock_id=None)
    while SubscriptionDueWork().run_due(db, scope=scope, at=END):
        pass
    return scope


def _numbered(db: Database, tenant: CreatedTenant) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                sa.text("select count(*) from invoices where tenant_id = :t and number is not null"),
                {"t": tenant.tenant.tenant_id},
            ).scalar_one()
        )


def _billing_run_statements(
    db: Database, tenant: CreatedTenant, count: int, *, runs: int = 1
) -> tuple[int, int]:
    """Set up `count` subscriptions of one tenant due at END, renew them, then count the
    statements billing them takes (`runs` runs started at once); return (statements, invoices)."""
    scope = _set_up(db, tenant, count)
    statements = 0

    def counted(*_: object) -> None:
        nonlocal statements
        statements += 1

    sa.event.listen(db.engine, "before_cursor_execute", counted)
    try:
        if runs == 1:
            BillingPointsDue().run_due(db, scope=scope, at=END)
        else:
            started = threading.Barrier(runs)

            def run() -> None:
                started.wait()
                BillingPointsDue().run_due(db, scope=scope, at=END)

            with ThreadPoolExecutor(runs) as pool:
                for done in [pool.submit(run) for _ in range(runs)]:
                    done.result()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", counted)
    return statements, _numbered(db, tenant)


@pytest.fixture
def only_this_tenant_due(db: Database) -> None:
    """The run follows the real clock across tenants: leave none of other tests' work due then."""
    with db.transaction() as conn:
        conn.execute(sa.text("update subscriptions set next_due_at = null where test_clock_id is null"))
        conn.execute(
            sa.text(
                "insert into billing_point_results (tenant_id, billing_point_id, processed_at) "
                "select p.tenant_id, p.billing_point_id, now() from billing_points p "
                "where p.test_clock_id is null and not exists (select 1 from billing_point_results r "
                "where r.tenant_id = p.tenant_id and r.billing_point_id = p.billing_point_id)"
            )
        )


@pytest.mark.usefixtures("only_this_tenant_due")
def test_the_same_statements_bill_100_or_1000_subscriptions(
    db: Database, tenant: CreatedTenant, other_tenant: CreatedTenant
) -> None:
    small = _billing_run_statements(db, tenant, 100)
    large = _billing_run_statements(db, other_tenant, 1000)
    assert (small[1], large[1]) == (100, 1000)
    assert small[0] == large[0]
    assert large[0] < 40


def _numbered_in_run_order(db: Database, tid: Any) -> list[tuple[str, str]]:
    """(number, subscription) of the tenant's finalized invoices of the run, by number; and the
    run's order of subscriptions (their creation, then id) must be the same."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select i.number, s.external_id from invoices i "
                "join subscriptions s using (tenant_id, subscription_id) "
                "where i.tenant_id = :t and i.number is not null and i.created_at = :e "
                "order by s.created_at, s.subscription_id"
            ),
            {"t": tid, "e": END},
        ).all()
    return [(row.number, row.external_id) for row in rows]


@pytest.mark.usefixtures("only_this_tenant_due")
def test_a_pipelined_run_numbers_its_batches_in_order(
    db: Database, tenant: CreatedTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60 subscriptions in batches of 7: nine batches, two at a time in flight, in two processes.
    monkeypatch.setattr("accrual.services.billing.due.BATCH", 7)
    pipelined = spy_on_lanes(monkeypatch)
    _statements, invoices = _billing_run_statements(db, tenant, 60)
    assert invoices == 60
    assert pipelined == [9]  # nine batches, billed in the lane processes
    assert lanes.started(db) == due.LANES
    numbers = [int(number[-6:]) for number, _ in _numbered_in_run_order(db, tenant.tenant.tenant_id)]
    # Gap-free, and in the run's order although batches overlapped.
    assert numbers == list(range(numbers[0], numbers[0] + 60))


@pytest.mark.usefixtures("only_this_tenant_due")
def test_two_pipelined_runs_at_once_bill_each_point_once(
    db: Database, tenant: CreatedTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("accrual.services.billing.due.BATCH", 5)
    _statements, invoices = _billing_run_statements(db, tenant, 40, runs=2)
    assert invoices == 40
    numbers = sorted(int(number[-6:]) for number, _ in _numbered_in_run_order(db, tenant.tenant.tenant_id))
    assert numbers == list(range(numbers[0], numbers[0] + 40))


@pytest.mark.usefixtures("only_this_tenant_due")
@pytest.mark.parametrize("point", ["composed", "numbered"])
def test_a_lane_killed_in_a_batch_stops_the_run_and_the_next_run_resumes(
    db: Database, tenant: CreatedTenant, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    monkeypatch.setattr("accrual.services.billing.due.BATCH", 6)
    scope = _set_up(db, tenant, 30)
    # Lanes started now die (os._exit) at that point of their first batch.
    lanes.shutdown()
    monkeypatch.setenv("ACCRUAL_CRASH_AT", point)
    with pytest.raises(lanes.LaneDied, match="exit code 86"):
        BillingPointsDue().run_due(db, scope=scope, at=END)
    assert _numbered(db, tenant) == 0
    lanes.shutdown()
    monkeypatch.delenv("ACCRUAL_CRASH_AT")
    while BillingPointsDue().run_due(db, scope=scope, at=END):
        pass
    numbers = [int(number[-6:]) for number, _ in _numbered_in_run_order(db, tenant.tenant.tenant_id)]
    assert numbers == list(range(numbers[0], numbers[0] + 30))
