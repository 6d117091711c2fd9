"""Invoices through the services: numbering, freezing, corrections, payments, drafts, late usage."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.domain import invoices as rules
from accrual.domain import money
from accrual.services import test_clocks
from accrual.services.billing import corrections, due, invoices, lanes
from accrual.services.due_work import ClockScope
from accrual.services.registry import default_registry
from accrual.services.subscriptions import SubscriptionDueWork
from accrual.services.usage import ingest, intake
from accrual.store.database import Database
from tests.integration.services.billing.conftest import ACTOR, MONTHLY_USD, play, spy_on_lanes

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _subscribe(sid: str, customer: str = "acme", plan: str = "pro") -> dict[str, Any]:
    return {
        "at": "2026-01-01T00:00:00Z",
        "subscribe": {"id": sid, "customer": customer, "plan": plan, "billing": "calendar"},
    }


def test_numbers_are_gap_free_in_subscription_order(db: Database, scenario: dict[str, Any]) -> None:
    scenario["customers"] = [{"id": c, "currency": "USD"} for c in ("a", "b", "c")]
    scenario["steps"] = [_subscribe("s_b", "b"), _subscribe("s_a", "a"), _subscribe("s_c", "c")]
    scenario["end"] = "2026-03-01T00:00:00Z"
    played = play(db, scenario)
    numbers = [(i["number"], i["subscription"], i["issued_at"][:10]) for i in played.invoices]
    assert numbers == [
        ("ACC-000001", "s_b", "2026-02-01"),
        ("ACC-000002", "s_a", "2026-02-01"),
        ("ACC-000003", "s_c", "2026-02-01"),
        ("ACC-000004", "s_b", "2026-03-01"),
        ("ACC-000005", "s_a", "2026-03-01"),
        ("ACC-000006", "s_c", "2026-03-01"),
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "update invoices set total = total + 1 where tenant_id = :t",
        "update invoices set number = 'X-1' where tenant_id = :t",
        "update invoices set status = 'draft' where tenant_id = :t",
        "delete from invoices where tenant_id = :t",
        "update invoice_lines set amount = amount + 1 where tenant_id = :t",
        "delete from invoice_lines where tenant_id = :t",
        "insert into invoice_lines select tenant_id, invoice_id, line_no + 100, kind, charge, description, "
        "period_start, period_end, quantity, unit_amount, amount, discount, tax, taxes, plan_version_id, "
        "meter_id, usage_group, window_start, window_end, details from invoice_lines where tenant_id = :t",
    ],
)
def test_a_finalized_invoice_is_frozen_by_the_database(
    db: Database, scenario: dict[str, Any], statement: str
) -> None:
    played = play(db, scenario)
    assert played.invoices[0]["status"] == "open"
    with pytest.raises(sa.exc.DBAPIError) as caught, db.transaction() as conn:
        conn.execute(sa.text(statement), {"t": played.tenant_id})
    assert getattr(caught.value.orig, "sqlstate", None) == "AC001"


def test_status_moves_only_forward(db: Database, scenario: dict[str, Any]) -> None:
    played = play(db, scenario)
    invoice_id = played.invoice_id("ACC-000001")
    invoices.void_invoice(db, tenant_id=played.tenant_id, invoice_id=invoice_id, actor=ACTOR, now=NOW)
    with pytest.raises(rules.InvoiceStateConflict):
        invoices.mark_uncollectible(
            db, tenant_id=played.tenant_id, invoice_id=invoice_id, actor=ACTOR, now=NOW
        )
    with pytest.raises(rules.InvoiceStateConflict):
        corrections.record_payment(
            db, tenant_id=played.tenant_id, invoice=invoice_id, spec={}, actor=ACTOR, now=NOW
        )
    # Even a direct write cannot reopen it.
    with pytest.raises(sa.exc.DBAPIError), db.transaction() as conn:
        conn.execute(
            sa.text("update invoices set status = 'open' where tenant_id = :t"), {"t": played.tenant_id}
        )


def test_billing_a_point_again_changes_nothing(db: Database, scenario: dict[str, Any]) -> None:
    played = play(db, scenario)
    (point,) = played.rows("select billing_point_id from billing_points where tenant_id = :t")
    again = invoices.bill_point(
        db, tenant_id=played.tenant_id, billing_point_id=point.billing_point_id, now=NOW
    )
    assert again is None
    assert len(played.rows("select 1 from invoices where tenant_id = :t")) == 1


def test_two_runs_racing_bill_each_point_once(db: Database, scenario: dict[str, Any]) -> None:
    scenario["customers"] = [{"id": f"c{i}", "currency": "USD"} for i in range(6)]
    scenario["steps"] = [_subscribe(f"s{i}", f"c{i}") for i in range(6)]
    # Stop before the boundary's billing, then let two runs race over the points it makes due.
    scenario["end"] = "2026-01-31T00:00:00Z"
    played = play(db, scenario)

    (clock,) = played.rows("select test_clock_id from test_clocks where tenant_id = :t")
    scope = ClockScope(tenant_id=played.tenant_id, test_clock_id=clock.test_clock_id)
    at = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    SubscriptionDueWork().run_due(db, scope=scope, at=at)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            due.BillingPointsDue().run_due(db, scope=scope, at=at)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = [
        r.number for r in played.rows("select number from invoices where tenant_id = :t order by number")
    ]
    assert numbers == [f"ACC-{n:06d}" for n in range(1, 7)]


def test_credit_note_on_a_paid_invoice_is_credit_for_the_next(db: Database, scenario: dict[str, Any]) -> None:
    scenario["steps"] += [
        {"at": "2026-02-02T00:00:00Z", "pay": {"invoice": "#1"}},
        {
            "at": "2026-02-03T00:00:00Z",
            "credit_note": {"invoice": "#1", "amount": "20.00", "reason": "outage"},
        },
    ]
    scenario["end"] = "2026-03-01T00:00:00Z"
    played = play(db, scenario)
    first, second = played.invoices
    assert (first["status"], first["amount_remaining"]) == ("paid", "0.00")
    note = played.report["credit_notes"][0]
    assert (note["number"], note["invoice"], note["amount"], note["to_balance"]) == (
        "CN-000001",
        "ACC-000001",
        "20.00",
        "20.00",
    )
    assert (second["total"], second["credit_applied"], second["amount_due"]) == ("50.00", "20.00", "30.00")


def test_credit_note_on_an_open_invoice_reduces_what_remains(db: Database, scenario: dict[str, Any]) -> None:
    scenario["steps"] += [
        {
            "at": "2026-02-03T00:00:00Z",
            "credit_note": {"invoice": "#1", "amount": "15.00", "reason": "goodwill"},
        }
    ]
    scenario["end"] = "2026-02-03T00:00:00Z"
    played = play(db, scenario)
    (invoice,) = played.invoices
    assert (invoice["status"], invoice["amount_due"], invoice["amount_remaining"]) == (
        "open",
        "50.00",
        "35.00",
    )
    assert played.report["credit_notes"][0]["to_invoice"] == "15.00"


def test_never_credit_more_than_was_invoiced(db: Database, scenario: dict[str, Any]) -> None:
    played = play(db, scenario)
    invoice_id = played.invoice_id("ACC-000001")
    spec = {"amount": "50.01", "reason": "too much"}
    with pytest.raises(rules.InvalidCredit) as caught:
        corrections.create_credit_note(
            db, tenant_id=played.tenant_id, invoice=invoice_id, spec=spec, actor=ACTOR, now=NOW
        )
    assert caught.value.field == "/amount"
    corrections.create_credit_note(
        db,
        tenant_id=played.tenant_id,
        invoice=invoice_id,
        spec={"amount": "30", "reason": "part"},
        actor=ACTOR,
        now=NOW,
    )
    with pytest.raises(rules.InvalidCredit):
        corrections.create_credit_note(
            db,
            tenant_id=played.tenant_id,
            invoice=invoice_id,
            spec={"amount": "20.01", "reason": "rest"},
            actor=ACTOR,
            now=NOW,
        )
    assert len(played.rows("select 1 from credit_notes where tenant_id = :t")) == 1


def test_partial_payment_then_overpayment_to_balance(db: Database, scenario: dict[str, Any]) -> None:
    played = play(db, scenario)
    invoice_id = played.invoice_id("ACC-000001")
    tid = played.tenant_id
    corrections.record_payment(
        db, tenant_id=tid, invoice=invoice_id, spec={"amount": "20"}, actor=ACTOR, now=NOW
    )
    view = invoices.get_invoice(db, tenant_id=tid, invoice_id=invoice_id)
    assert (view.status, view.amount_remaining) == (rules.InvoiceStatus.OPEN, Decimal("30.00"))
    failed = corrections.record_payment(
        db,
        tenant_id=tid,
        invoice=invoice_id,
        spec={"amount": "30", "outcome": "failed"},
        actor=ACTOR,
        now=NOW,
    )
    assert failed.to_invoice == 0
    payment = corrections.record_payment(
        db,
        tenant_id=tid,
        invoice=invoice_id,
        spec={"amount": "45", "method": "bank_transfer"},
        actor=ACTOR,
        now=NOW,
    )
    assert (payment.to_invoice, payment.to_balance) == (Decimal("30.00"), Decimal("15.00"))
    view = invoices.get_invoice(db, tenant_id=tid, invoice_id=invoice_id)
    assert (view.status, view.amount_remaining) == (rules.InvoiceStatus.PAID, Decimal("0.00"))
    customer_id = view.customer_id
    assert corrections.customer_balances(db, tenant_id=tid, customer_id=customer_id) == {
        "USD": Decimal("15.00")
    }


def test_a_zero_invoice_is_paid_when_finalized(db: Database, scenario: dict[str, Any]) -> None:
    scenario["catalog"] = {
        "meters": [{"code": "calls", "aggregation": "count"}],
        "plans": [
            {
                "code": "pro",
                "currency": "USD",
                "interval": "month",
                "charges": [{"code": "calls", "meter": "calls", "model": "per_unit", "amount": "1"}],
            }
        ],
    }
    played = play(db, scenario)
    (invoice,) = played.invoices
    assert (invoice["status"], invoice["total"], invoice["lines"][0]["quantity"]) == ("paid", "0.00", "0")


def test_grace_period_keeps_a_draft_editable_until_it_ends(db: Database, scenario: dict[str, Any]) -> None:
    scenario["grace_period_days"] = 3
    scenario["end"] = "2026-02-02T00:00:00Z"
    played = play(db, scenario)
    (draft,) = played.invoices
    assert (draft["status"], draft["number"], draft["finalize_at"]) == ("draft", None, "2026-02-04T00:00:00Z")
    invoice_id = played.rows("select invoice_id from invoices where tenant_id = :t")[0].invoice_id
    tid = played.tenant_id
    edited = invoices.add_line(
        db,
        tenant_id=tid,
        invoice_id=invoice_id,
        spec={"description": "setup", "amount": "25.00"},
        actor=ACTOR,
        now=NOW,
    )
    assert edited.total == Decimal("75.00")
    with pytest.raises(invoices.InvoiceLineNotFound):
        invoices.remove_line(db, tenant_id=tid, invoice_id=invoice_id, line_no=9, actor=ACTOR, now=NOW)
    with pytest.raises(rules.InvoiceStateConflict):
        invoices.remove_line(db, tenant_id=tid, invoice_id=invoice_id, line_no=1, actor=ACTOR, now=NOW)
    # Usage counted until the draft finalizes is on it.
    events = intake.parse_events(
        [
            {
                "id": "late-but-in-grace",
                "subscription": "s1",
                "meter": "calls",
                "timestamp": "2026-01-31T12:00:00Z",
            }
        ],
        now=NOW,
    )
    assert ingest.ingest(db, tenant_id=tid, events=events, now=NOW)[0].late is False
    (clock,) = played.rows("select test_clock_id from test_clocks where tenant_id = :t")
    test_clocks.advance_test_clock(
        db,
        tenant_id=tid,
        test_clock_id=clock.test_clock_id,
        to=dt.datetime(2026, 2, 5, tzinfo=dt.UTC),
        registry=default_registry(),
        actor=ACTOR,
        now=NOW,
    )
    final = invoices.get_invoice(db, tenant_id=tid, invoice_id=invoice_id)
    assert (final.number, final.status, final.finalized_at) == (
        "ACC-000001",
        rules.InvoiceStatus.OPEN,
        dt.datetime(2026, 2, 4, tzinfo=dt.UTC),
    )
    assert final.total == Decimal("76.00")


def test_late_events_are_billed_on_the_next_invoice(db: Database, scenario: dict[str, Any]) -> None:
    scenario["steps"] += [
        {
            "at": "2026-01-10T00:00:00Z",
            "events": [
                {
                    "id": "a",
                    "repeat": 3,
                    "subscription": "s1",
                    "meter": "calls",
                    "timestamp": "2026-01-09T00:00:00Z",
                }
            ],
        },
        {
            "at": "2026-02-05T00:00:00Z",
            "events": [
                {
                    "id": "late",
                    "repeat": 2,
                    "subscription": "s1",
                    "meter": "calls",
                    "timestamp": "2026-01-20T00:00:00Z",
                }
            ],
        },
    ]
    scenario["end"] = "2026-03-01T00:00:00Z"
    played = play(db, scenario)
    first, second = played.invoices
    assert [(line["kind"], line["quantity"], line["amount"]) for line in first["lines"]] == [
        ("fee", "1", "50.00"),
        ("usage", "3", "3.00"),
    ]
    late = [line for line in second["lines"] if line["kind"] == "late_usage"]
    assert [(line["quantity"], line["amount"], line["period"]["start"]) for line in late] == [
        ("2", "2.00", "2026-01-01T00:00:00Z")
    ]
    assert second["total"] == "52.00"


def test_late_events_are_refused_under_the_reject_policy(db: Database, scenario: dict[str, Any]) -> None:
    scenario["late_events"] = "reject"
    scenario["steps"] += [
        {
            "at": "2026-02-05T00:00:00Z",
            "events": [
                {"id": "late", "subscription": "s1", "meter": "calls", "timestamp": "2026-01-20T00:00:00Z"}
            ],
        },
    ]
    scenario["end"] = "2026-03-01T00:00:00Z"
    played = play(db, scenario)
    assert [r["id"] for r in played.report["events"]["rejected"]] == ["late"]
    assert played.report["events"]["accepted"] == 0
    assert all(line["kind"] != "late_usage" for i in played.invoices for line in i["lines"])


def test_a_voided_invoice_is_not_billed_again(db: Database, scenario: dict[str, Any]) -> None:
    scenario["steps"] += [{"at": "2026-02-02T00:00:00Z", "void": {"invoice": "#1"}}]
    scenario["end"] = "2026-03-01T00:00:00Z"
    played = play(db, scenario)
    assert [(i["number"], i["status"], i["period"]["start"][:10]) for i in played.invoices] == [
        ("ACC-000001", "void", "2026-01-01"),
        ("ACC-000002", "open", "2026-02-01"),
    ]


def test_deleting_a_draft_releases_nothing_twice(db: Database, scenario: dict[str, Any]) -> None:
    scenario["grace_period_days"] = 2
    played = play(db, scenario)
    invoice_id = played.rows("select invoice_id from invoices where tenant_id = :t")[0].invoice_id
    invoices.delete_draft(db, tenant_id=played.tenant_id, invoice_id=invoice_id, actor=ACTOR, now=NOW)
    assert played.rows("select 1 from invoices where tenant_id = :t") == []
    assert len(played.rows("select 1 from billing_point_results where tenant_id = :t")) == 1


# $1 a GB (a negative sum of GB cannot be rated).
PER_GB: dict[str, Any] = {
    "meters": [{"code": "gb", "aggregation": "sum", "field": "gb"}],
    "plans": [
        {
            "code": "pro",
            "currency": "USD",
            "interval": "month",
            "charges": [{"code": "gb", "meter": "gb", "model": "per_unit", "amount": "1"}],
        }
    ],
}


def test_a_point_that_cannot_be_billed_is_set_aside_and_the_run_goes_on(
    db: Database, scenario: dict[str, Any]
) -> None:
    scenario["catalog"] = PER_GB
    scenario["customers"] = [{"id": c, "currency": "USD"} for c in ("a", "b")]
    scenario["steps"] = [
        _subscribe("bad", "a"),
        _subscribe("good", "b"),
        {
            "at": "2026-01-05T00:00:00Z",
            "events": [
                {"id": "refund", "subscription": "bad", "meter": "gb", "properties": {"gb": -5}},
                {"id": "use", "subscription": "good", "meter": "gb", "properties": {"gb": 3}},
            ],
        },
    ]
    played = play(db, scenario)
    assert [(i["subscription"], i["total"]) for i in played.invoices] == [("good", "3.00")]
    (failure,) = due.list_failures(db, tenant_id=played.tenant_id)
    assert "negative" in failure.error
    # Set aside, it stays queued (the run skips it) until it has a result.
    queued = played.rows("select billing_point_id from billing_queue where tenant_id = :t")
    assert [row.billing_point_id for row in queued] == [failure.billing_point_id]
    assert due.retry_failures(db, tenant_id=played.tenant_id) == 1
    assert due.list_failures(db, tenant_id=played.tenant_id) == []


def test_a_point_that_cannot_be_billed_in_a_lane_is_set_aside_and_the_run_goes_on(
    db: Database, scenario: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of one point: the run pipelines them in its lane processes, where the bad
    # subscription's batch fails, is billed point by point and set aside, and the others go on.
    monkeypatch.setattr(due, "BATCH", 1)
    pipelined = spy_on_lanes(monkeypatch)
    scenario["catalog"] = PER_GB
    names = ["first", "bad", "last"]
    scenario["customers"] = [{"id": name, "currency": "USD"} for name in names]
    scenario["steps"] = [_subscribe(name, name) for name in names] + [
        {
            "at": "2026-01-05T00:00:00Z",
            "events": [
                {
                    "id": f"use-{name}",
                    "subscription": name,
                    "meter": "gb",
                    "properties": {"gb": -5 if name == "bad" else 3},
                }
                for name in names
            ],
        },
    ]
    played = play(db, scenario)
    assert pipelined
    assert lanes.started(db) == due.LANES
    billed = sorted((i["number"], i["subscription"], i["total"]) for i in played.invoices)
    assert [(subscription, total) for _, subscription, total in billed] == [
        ("first", "3.00"),
        ("last", "3.00"),
    ]
    assert int(billed[1][0][-6:]) == int(billed[0][0][-6:]) + 1  # no gap where the bad one was
    (failure,) = due.list_failures(db, tenant_id=played.tenant_id)
    assert "negative" in failure.error


def test_a_draft_keeps_its_late_usage_line_when_it_finalizes(db: Database, scenario: dict[str, Any]) -> None:
    scenario["grace_period_days"] = 3
    scenario["steps"] += [
        {
            "at": "2026-02-05T00:00:00Z",
            "events": [
                {
                    "id": "late",
                    "repeat": 5,
                    "subscription": "s1",
                    "meter": "calls",
                    "timestamp": "2026-01-20T00:00:00Z",
                }
            ],
        },
        {
            "at": "2026-03-02T00:00:00Z",
            "events": [
                {"id": "grace", "subscription": "s1", "meter": "calls", "timestamp": "2026-02-27T00:00:00Z"}
            ],
        },
    ]
    scenario["end"] = "2026-03-05T00:00:00Z"
    played = play(db, scenario)
    first, second = played.invoices
    assert (first["status"], first["issued_at"]) == ("open", "2026-02-04T00:00:00Z")
    kinds = [(line["kind"], line["quantity"], line["amount"]) for line in second["lines"]]
    # February's own usage (an event arriving in the grace period is not late), and January's
    # late events, billed once, kept when the draft is composed again to finalize.
    assert kinds == [("fee", "1", "50.00"), ("usage", "1", "1.00"), ("late_usage", "5", "5.00")]
    assert (second["status"], second["total"]) == ("open", "56.00")


def test_a_late_event_in_a_group_new_to_its_window_is_billed(db: Database, scenario: dict[str, Any]) -> None:
    scenario["catalog"] = {
        "meters": [{"code": "calls", "aggregation": "count", "group_by": ["region"]}],
        "plans": [
            {
                "code": "pro",
                "currency": "USD",
                "interval": "month",
                "charges": [{"code": "calls", "meter": "calls", "model": "per_unit", "amount": "1"}],
            }
        ],
    }
    scenario["steps"] += [
        {
            "at": "2026-01-05T00:00:00Z",
            "events": [{"id": "us", "subscription": "s1", "meter": "calls", "properties": {"region": "us"}}],
        },
        {
            "at": "2026-02-05T00:00:00Z",
            "events": [
                {
                    "id": "eu",
                    "repeat": 2,
                    "subscription": "s1",
                    "meter": "calls",
                    "timestamp": "2026-01-20T00:00:00Z",
                    "properties": {"region": "eu"},
                }
            ],
        },
    ]
    scenario["end"] = "2026-03-01T00:00:00Z"
    played = play(db, scenario)
    late = [line for line in played.invoices[1]["lines"] if line["kind"] == "late_usage"]
    assert [(line["quantity"], line["amount"], "eu" in line["description"]) for line in late] == [
        ("2", "2.00", True)
    ]


def test_a_draft_that_cannot_finalize_is_set_aside_and_the_others_go_on(
    db: Database, scenario: dict[str, Any]
) -> None:
    scenario["grace_period_days"] = 3
    scenario["catalog"] = PER_GB
    scenario["customers"] = [{"id": c, "currency": "USD"} for c in ("a", "b")]
    scenario["steps"] = [
        _subscribe("bad", "a"),
        _subscribe("good", "b"),
        {
            "at": "2026-01-05T00:00:00Z",
            "events": [{"id": "use", "subscription": "good", "meter": "gb", "properties": {"gb": 3}}],
        },
        # In the grace period, on time for the draft: it makes January's sum negative.
        {
            "at": "2026-02-02T00:00:00Z",
            "events": [
                {
                    "id": "refund",
                    "subscription": "bad",
                    "meter": "gb",
                    "timestamp": "2026-01-31T00:00:00Z",
                    "properties": {"gb": -5},
                }
            ],
        },
    ]
    scenario["end"] = "2026-02-10T00:00:00Z"
    played = play(db, scenario)
    assert [(i["subscription"], i["status"]) for i in played.invoices] == [("good", "open"), ("bad", "draft")]
    (failure,) = due.list_failures(db, tenant_id=played.tenant_id)
    assert "negative" in failure.error


def test_a_repeating_coupon_counts_billing_periods_not_invoices(
    db: Database, scenario: dict[str, Any]
) -> None:
    scenario["catalog"] = MONTHLY_USD | {
        "coupons": [
            {"code": "TWO", "kind": "percentage", "value": "50", "duration": "repeating", "periods": 2}
        ]
    }
    scenario["catalog"]["plans"] = [
        *MONTHLY_USD["plans"],
        {
            "code": "big",
            "currency": "USD",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "62"}],
        },
    ]
    scenario["steps"] = [
        {
            "at": "2026-01-01T00:00:00Z",
            "subscribe": {
                "id": "s1",
                "customer": "acme",
                "plan": "seat",
                "billing": "calendar",
                "coupon": "TWO",
            },
        },
        {
            "at": "2026-01-16T00:00:00Z",
            "change": {"subscription": "s1", "plan": "big", "timing": "immediate"},
        },
    ]
    scenario["end"] = "2026-03-01T00:00:00Z"
    played = play(db, scenario)
    discounted = [(i["issued_at"][:10], i["discount"] != "0.00") for i in played.invoices]
    # January (its start and its change: one period), then February; March is full price.
    assert discounted == [
        ("2026-01-01", True),
        ("2026-01-16", True),
        ("2026-02-01", True),
        ("2026-03-01", False),
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "update invoice_lines set invoice_id = :draft where tenant_id = :t and invoice_id = :final",
        "delete from late_usage_claims where tenant_id = :t and invoice_id = :final",
        "update invoices set amount_paid = 0 where tenant_id = :t and invoice_id = :final",
    ],
)
def test_facts_of_a_finalized_invoice_cannot_be_moved_or_undone(
    db: Database, scenario: dict[str, Any], statement: str
) -> None:
    scenario["grace_period_days"] = 3
    scenario["steps"] += [
        {
            "at": "2026-02-05T00:00:00Z",
            "events": [
                {"id": "late", "subscription": "s1", "meter": "calls", "timestamp": "2026-01-20T00:00:00Z"}
            ],
        },
        {"at": "2026-03-04T00:00:00Z", "pay": {"invoice": "#2", "amount": "1.00"}},
    ]
    scenario["end"] = "2026-04-02T00:00:00Z"
    played = play(db, scenario)
    final = played.invoice_id("ACC-000002")
    (draft,) = played.rows("select invoice_id from invoices where tenant_id = :t and status = 'draft'")
    assert played.rows("select 1 from late_usage_claims where tenant_id = :t and invoice_id = :i", i=final)
    with pytest.raises(sa.exc.DBAPIError) as caught, db.transaction() as conn:
        conn.execute(sa.text(statement), {"t": played.tenant_id, "final": final, "draft": draft.invoice_id})
    assert getattr(caught.value.orig, "sqlstate", None) == "AC001"


def test_a_change_at_a_boundary_replaces_a_pending_period_end_change(
    db: Database, scenario: dict[str, Any]
) -> None:
    scenario["catalog"] = MONTHLY_USD | {
        "plans": [
            *MONTHLY_USD["plans"],
            {
                "code": "small",
                "currency": "USD",
                "interval": "month",
                "charges": [{"code": "base", "model": "flat", "amount": "10"}],
            },
            {
                "code": "big",
                "currency": "USD",
                "interval": "month",
                "charges": [{"code": "base", "model": "flat", "amount": "62"}],
            },
        ]
    }
    scenario["steps"] = [
        {
            "at": "2026-01-01T00:00:00Z",
            "subscribe": {"id": "s1", "customer": "acme", "plan": "seat", "billing": "calendar"},
        },
        {
            "at": "2026-01-10T00:00:00Z",
            "change": {"subscription": "s1", "plan": "small", "timing": "period_end"},
        },
        {
            "at": "2026-02-01T00:00:00Z",
            "change": {"subscription": "s1", "plan": "big", "timing": "immediate"},
        },
    ]
    scenario["end"] = "2026-02-01T00:00:00Z"
    played = play(db, scenario)
    assert [(i["issued_at"][:10], i["total"]) for i in played.invoices] == [
        ("2026-01-01", "31.00"),
        ("2026-02-01", "62.00"),
    ]
    assert played.report["subscriptions"][0]["plan"] == "big"


def test_a_one_off_amount_that_is_not_a_number_names_its_field(
    db: Database, scenario: dict[str, Any]
) -> None:
    scenario["grace_period_days"] = 2
    played = play(db, scenario)
    (draft,) = played.rows("select invoice_id from invoices where tenant_id = :t")
    with pytest.raises(money.InvalidNumber) as caught:
        invoices.add_line(
            db,
            tenant_id=played.tenant_id,
            invoice_id=draft.invoice_id,
            spec={"description": "x", "amount": "abc"},
            actor=ACTOR,
            now=NOW,
        )
    assert caught.value.field == "/amount"


def test_the_billing_queue_holds_exactly_the_points_without_a_result(
    db: Database, scenario: dict[str, Any]
) -> None:
    played = play(db, scenario)
    points = played.rows(
        "select p.billing_point_id, p.at, p.subscription_id, p.history_seq, s.created_at "
        "from billing_points p join subscriptions s using (tenant_id, subscription_id) "
        "where p.tenant_id = :t order by p.at"
    )
    assert points
    unbilled = played.rows(
        "select p.billing_point_id from billing_points p where p.tenant_id = :t and not exists "
        "(select 1 from billing_point_results r where r.tenant_id = p.tenant_id "
        "and r.billing_point_id = p.billing_point_id)"
    )
    queued = played.rows("select billing_point_id from billing_queue where tenant_id = :t")
    assert unbilled == queued == []
    # A new point is queued, with what orders it; its result takes it off the queue.
    with db.transaction() as conn:
        conn.execute(
            sa.text(
                "insert into billing_points (tenant_id, billing_point_id, subscription_id, history_seq, "
                "reason, at, period_start, period_end, fee_lines, usage, test_clock_id, created_at) "
                "select tenant_id, gen_random_uuid(), subscription_id, history_seq + 1000, reason, at, "
                "period_start, period_end, fee_lines, usage, test_clock_id, created_at from billing_points "
                "where tenant_id = :t and billing_point_id = :p"
            ),
            {"t": played.tenant_id, "p": points[-1].billing_point_id},
        )
    (row,) = played.rows("select * from billing_queue where tenant_id = :t")
    assert (row.at, row.subscription_id, row.history_seq, row.subscription_created_at) == (
        points[-1].at,
        points[-1].subscription_id,
        points[-1].history_seq + 1000,
        points[-1].created_at,
    )
    with db.transaction() as conn:
        conn.execute(
            sa.text(
                "insert into billing_point_results (tenant_id, billing_point_id, processed_at) "
                "values (:t, :p, now())"
            ),
            {"t": played.tenant_id, "p": row.billing_point_id},
        )
    assert played.rows("select 1 from billing_queue where tenant_id = :t") == []
