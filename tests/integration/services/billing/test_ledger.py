"""The ledger: balanced and append-only by the database, posted once per fact in the fact's
transaction, and in agreement with the documents it was posted from."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.domain.errors import InvalidInput
from accrual.domain.ledger import Account, Leg
from accrual.services import ledger
from accrual.services.billing import corrections, invoices
from accrual.services.tenants import CreatedTenant
from accrual.store import ledger as ledger_store
from accrual.store.database import Database
from tests.integration.services.billing.conftest import ACTOR, play

NOW = dt.datetime(2026, 2, 10, tzinfo=dt.UTC)

ENTRY = """
insert into ledger_entries (tenant_id, entry_id, kind, effective_at, source_id, description, created_at)
values (:t, :e, 'payment', now(), :e, 'test', now())
"""
LINE = """
insert into ledger_lines (tenant_id, entry_id, line_no, account, currency, amount)
values (:t, :e, :n, :a, 'USD', :amount)
"""


def _write_entry(db: Database, params: dict[str, Any], lines: list[tuple[str, int]]) -> None:
    with db.transaction() as conn:
        conn.execute(sa.text(ENTRY), params)
        for n, (account, amount) in enumerate(lines, start=1):
            conn.execute(sa.text(LINE), params | {"n": n, "a": account, "amount": amount})


def _sqlstate(error: pytest.ExceptionInfo[sa.exc.DBAPIError]) -> str | None:
    return getattr(error.value.orig, "sqlstate", None)


def test_an_entry_that_does_not_balance_is_refused_at_commit(db: Database, tenant: CreatedTenant) -> None:
    entry = uuid.uuid4()
    params = {"t": tenant.tenant.tenant_id, "e": entry, "k": f"test:{entry}"}
    with pytest.raises(sa.exc.DBAPIError) as caught:
        _write_entry(db, params, [("cash", 100), ("accounts_receivable", -99)])
    assert _sqlstate(caught) == "AC002"
    assert "does not balance" in str(caught.value.orig)


def test_lines_may_come_in_any_order_within_the_transaction(db: Database, tenant: CreatedTenant) -> None:
    entry = uuid.uuid4()
    params = {"t": tenant.tenant.tenant_id, "e": entry, "k": f"test:{entry}"}
    with db.transaction() as conn:
        conn.execute(sa.text(ENTRY), params)
        conn.execute(sa.text(LINE), params | {"n": 1, "a": "cash", "amount": 100})
        # Unbalanced between these statements: only the commit counts.
        conn.execute(sa.text(LINE), params | {"n": 2, "a": "accounts_receivable", "amount": -100})
    # No line can be added later to a posted entry, even one that would keep it balanced.
    with pytest.raises(sa.exc.DBAPIError) as caught, db.transaction() as conn:
        conn.execute(sa.text(LINE), params | {"n": 3, "a": "cash", "amount": 5})
    assert _sqlstate(caught) == "23503"  # the entry was written by another transaction


def test_an_entry_without_lines_is_refused(db: Database, tenant: CreatedTenant) -> None:
    entry = uuid.uuid4()
    with pytest.raises(sa.exc.DBAPIError) as caught:
        _write_entry(db, {"t": tenant.tenant.tenant_id, "e": entry, "k": f"test:{entry}"}, [])
    assert _sqlstate(caught) == "AC002"


def test_lines_may_be_written_in_a_savepoint_of_the_entrys_transaction(
    db: Database, tenant: CreatedTenant
) -> None:
    entry = uuid.uuid4()
    params = {"t": tenant.tenant.tenant_id, "e": entry, "k": f"test:{entry}"}
    with db.transaction() as conn:
        conn.execute(sa.text(ENTRY), params)
        with conn.begin_nested():
            conn.execute(sa.text(LINE), params | {"n": 1, "a": "cash", "amount": 3})
            conn.execute(sa.text(LINE), params | {"n": 2, "a": "customer_credit", "amount": -3})


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_lines"])
@pytest.mark.parametrize("statement", ["update {t} set tenant_id = tenant_id", "delete from {t}"])
def test_ledger_rows_cannot_be_changed(
    db: Database, tenant: CreatedTenant, table: str, statement: str
) -> None:
    entry = uuid.uuid4()
    params = {"t": tenant.tenant.tenant_id, "e": entry, "k": f"test:{entry}"}
    _write_entry(db, params, [("cash", 7), ("customer_credit", -7)])
    with pytest.raises(sa.exc.DBAPIError) as caught, db.transaction() as conn:
        conn.execute(sa.text(statement.format(t=table) + " where tenant_id = :t"), params)
    assert _sqlstate(caught) == "AC001"


def _overpayment(minor: int) -> ledger_store.Posting:
    """A payment of `minor` USD cents, all of it to the customer's credit."""
    return ledger_store.Posting(
        kind="payment",
        currency="USD",
        legs=(Leg(Account.CASH, minor), Leg(Account.CUSTOMER_CREDIT, -minor)),
        source_id=uuid.uuid4(),
        description="an overpayment",
    )


def test_a_posting_is_posted_once_per_key(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    posting = _overpayment(250)
    for expected in (1, 0):
        with db.transaction() as conn:
            assert ledger_store.post(conn, tenant_id=tid, at=NOW, postings=[posting]) == expected
    assert ledger.trial_balance(db, tenant_id=tid)["USD"]["cash"] == Decimal("2.50")


def _accounts(played: Any, as_of: dt.datetime | None = None) -> dict[str, Decimal]:
    balances: dict[str, Decimal] = ledger.trial_balance(played.db, tenant_id=played.tenant_id, as_of=as_of)[
        "USD"
    ]
    return balances


def test_an_invoice_finalized_then_paid_in_part_then_voided(db: Database, scenario: dict[str, Any]) -> None:
    scenario["catalog"] = {**scenario["catalog"], "taxes": [{"code": "T10", "rate": "10"}]}
    scenario["customers"][0]["tax"] = "T10"
    played = play(db, scenario)
    (invoice,) = played.invoices
    invoice_id = played.invoice_id(invoice["number"])
    # $50 fee for January, 10% tax: $55 due; the fee's revenue waits in deferred revenue.
    assert _accounts(played) == {
        "accounts_receivable": Decimal("55.00"),
        "deferred_revenue": Decimal("50.00"),
        "tax_payable": Decimal("5.00"),
        "cash": Decimal("0.00"),
        "revenue": Decimal("0.00"),
        "unbilled_receivable": Decimal("0.00"),
        "customer_credit": Decimal("0.00"),
        "contra_revenue": Decimal("0.00"),
        "bad_debt": Decimal("0.00"),
    }
    corrections.record_payment(
        db, tenant_id=played.tenant_id, invoice=invoice_id, spec={"amount": "20"}, actor=ACTOR, now=NOW
    )
    invoices.void_invoice(db, tenant_id=played.tenant_id, invoice_id=invoice_id, actor=ACTOR, now=NOW)
    after = _accounts(played)
    assert after["accounts_receivable"] == after["deferred_revenue"] == after["tax_payable"] == 0
    assert after["cash"] == after["customer_credit"] == Decimal("20.00")  # the payment is now credit
    # As of before the invoice was finalized, nothing was posted.
    january = dt.datetime(2026, 1, 31, tzinfo=dt.UTC)
    assert ledger.trial_balance(db, tenant_id=played.tenant_id, as_of=january) == {}
    kinds = [e.kind for e in ledger.invoice_entries(db, tenant_id=played.tenant_id, invoice_id=invoice_id)]
    assert kinds == ["invoice_finalized", "payment", "invoice_voided"]


def test_a_write_off_then_a_late_payment_recovers_the_bad_debt(
    db: Database, scenario: dict[str, Any]
) -> None:
    played = play(db, scenario)
    invoice_id = played.invoice_id(played.invoices[0]["number"])
    invoices.mark_uncollectible(db, tenant_id=played.tenant_id, invoice_id=invoice_id, actor=ACTOR, now=NOW)
    written = _accounts(played)
    assert (written["accounts_receivable"], written["bad_debt"]) == (0, Decimal("50.00"))
    corrections.create_credit_note(
        db,
        tenant_id=played.tenant_id,
        invoice=invoice_id,
        spec={"amount": "10", "reason": "goodwill"},
        actor=ACTOR,
        now=NOW,
    )
    corrections.record_payment(
        db, tenant_id=played.tenant_id, invoice=invoice_id, spec={}, actor=ACTOR, now=NOW
    )
    paid = _accounts(played)
    assert paid["bad_debt"] == 0
    assert paid["cash"] == Decimal("40.00")
    assert paid["deferred_revenue"] == Decimal("40.00")  # $10 of the fee's revenue came back
    assert ledger.is_balanced(ledger.trial_balance(db, tenant_id=played.tenant_id))


def test_receivable_ages_by_days_past_due_and_ties_out(db: Database, scenario: dict[str, Any]) -> None:
    scenario["end"] = "2026-05-01T00:00:00Z"
    played = play(db, scenario)
    # $50 for each of January to April, due on receipt on the 1st of February to May.
    numbers = sorted(i["number"] for i in played.invoices)
    assert len(numbers) == 4
    corrections.record_payment(
        db, tenant_id=played.tenant_id, invoice=played.invoice_id(numbers[2]), spec={}, actor=ACTOR, now=NOW
    )
    as_of = dt.datetime(2026, 6, 15, tzinfo=dt.UTC)
    aging = ledger.ar_aging(db, tenant_id=played.tenant_id, as_of=as_of)
    (row,) = aging.customers
    assert (row.customer, row.currency) == ("acme", "USD")
    # Due Feb 1 and Mar 1: over 90 days; Apr 1 (75 days) paid; May 1: 45 days.
    assert row.buckets == {
        "current": Decimal("0.00"),
        "1_30": Decimal("0.00"),
        "31_60": Decimal("50.00"),
        "61_90": Decimal("0.00"),
        "over_90": Decimal("100.00"),
    }
    totals = aging.totals()["USD"]
    assert (
        totals["total"]
        == ledger.trial_balance(db, tenant_id=played.tenant_id, as_of=as_of)["USD"]["accounts_receivable"]
    )
    # On the day each fell due, an invoice is current; before any was finalized, nothing is owed.
    on_may_first = ledger.ar_aging(
        db, tenant_id=played.tenant_id, as_of=dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    )
    assert on_may_first.customers[0].buckets["current"] == Decimal("50.00")
    assert (
        ledger.ar_aging(
            db, tenant_id=played.tenant_id, as_of=dt.datetime(2026, 1, 15, tzinfo=dt.UTC)
        ).customers
        == []
    )
    csv_text = ledger.aging_csv(aging)
    assert csv_text.splitlines() == [
        "currency,customer,current,1_30,31_60,61_90,over_90,total",
        "USD,acme,0.00,0.00,50.00,0.00,100.00,150.00",
        "USD,(total),0.00,0.00,50.00,0.00,100.00,150.00",
    ]


def test_a_closed_month_takes_no_entry_in_the_database(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    ledger.close_period(db, tenant_id=tid, month="2026-01", actor=ACTOR, now=NOW)
    entry = uuid.uuid4()
    with pytest.raises(sa.exc.DBAPIError) as caught, db.transaction() as conn:
        conn.execute(
            sa.text(
                "insert into ledger_entries (tenant_id, entry_id, kind, effective_at, source_id, "
                "description, created_at) "
                "values (:t, :e, 'payment', '2026-01-15T00:00:00Z', :e, 'backdated', now())"
            ),
            {"t": tid, "e": entry},
        )
    assert _sqlstate(caught) == "AC003"


def test_a_fact_in_a_closed_month_posts_in_the_next_open_one(db: Database, scenario: dict[str, Any]) -> None:
    played = play(db, scenario)
    tid = played.tenant_id
    invoice_id = played.invoice_id(played.invoices[0]["number"])
    march = dt.datetime(2026, 3, 5, tzinfo=dt.UTC)
    closed = ledger.close_period(db, tenant_id=tid, month="2026-02", actor=ACTOR, now=march)
    assert (closed.month, closed.status) == ("2026-02", "closed")
    # The customer's test clock stands at February 1: the payment happens in the closed month.
    corrections.record_payment(
        db, tenant_id=tid, invoice=invoice_id, spec={"amount": "20"}, actor=ACTOR, now=march
    )
    with db.connect() as conn:
        posted = conn.execute(
            sa.text(
                "select effective_at, original_effective_at from ledger_entries "
                "where tenant_id = :t and kind = 'payment'"
            ),
            {"t": tid},
        ).one()
    assert posted.effective_at == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert posted.original_effective_at == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    end_of_february = dt.datetime(2026, 2, 28, 23, 59, tzinfo=dt.UTC)
    assert ledger.trial_balance(db, tenant_id=tid, as_of=end_of_february)["USD"]["cash"] == 0
    # Reopened (with a reason), February takes postings again.
    reopened = ledger.reopen_period(
        db, tenant_id=tid, month="2026-02", reason="late bank file", actor=ACTOR, now=march
    )
    assert (reopened.status, reopened.reason) == ("open", "late bank file")
    corrections.record_payment(db, tenant_id=tid, invoice=invoice_id, spec={}, actor=ACTOR, now=march)
    assert ledger.trial_balance(db, tenant_id=tid, as_of=end_of_february)["USD"]["cash"] == Decimal("30.00")
    assert [(p.month, p.status) for p in ledger.periods(db, tenant_id=tid)] == [("2026-02", "open")]
    kinds = played.rows(
        "select event_type from outbox_events where tenant_id = :t and entity_type = 'accounting_period' "
        "order by seq"
    )
    assert [k.event_type for k in kinds] == ["accounting_period.closed", "accounting_period.reopened"]


def test_what_a_period_refuses(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    with pytest.raises(ledger.PeriodNotClosable, match="has not ended"):
        ledger.close_period(db, tenant_id=tid, month="2026-02", actor=ACTOR, now=NOW)
    ledger.close_period(db, tenant_id=tid, month="2026-01", actor=ACTOR, now=NOW)
    with pytest.raises(ledger.PeriodNotClosable, match="already closed"):
        ledger.close_period(db, tenant_id=tid, month="2026-01", actor=ACTOR, now=NOW)
    with pytest.raises(ledger.PeriodNotClosable, match="not closed"):
        ledger.reopen_period(db, tenant_id=tid, month="2025-12", reason="x", actor=ACTOR, now=NOW)
    with pytest.raises(InvalidInput) as bad_reason:
        ledger.reopen_period(db, tenant_id=tid, month="2026-01", reason="  ", actor=ACTOR, now=NOW)
    assert bad_reason.value.field == "/reason"
    for month in ("2026-13", "2026-1", "January"):
        with pytest.raises(InvalidInput) as bad_month:
            ledger.close_period(db, tenant_id=tid, month=month, actor=ACTOR, now=NOW)
        assert bad_month.value.field == "month"
    # A period change is a fact too: the database keeps it.
    with pytest.raises(sa.exc.DBAPIError) as caught, db.transaction() as conn:
        conn.execute(sa.text("delete from accounting_period_changes where tenant_id = :t"), {"t": tid})
    assert _sqlstate(caught) == "AC001"


def test_a_close_waits_for_postings_in_flight(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    posting = _overpayment(100)
    january = dt.datetime(2026, 1, 20, tzinfo=dt.UTC)
    closed = threading.Event()

    def close_january() -> None:
        ledger.close_period(db, tenant_id=tid, month="2026-01", actor=ACTOR, now=NOW)
        closed.set()

    with db.transaction() as conn:
        ledger_store.post(conn, tenant_id=tid, at=january, postings=[posting])
        closer = threading.Thread(target=close_january)
        closer.start()
        # The close waits on the posting's lock: January is not closed under it.
        assert not closed.wait(timeout=1.0)
    closer.join(timeout=10)
    assert closed.is_set()
    assert ledger.trial_balance(db, tenant_id=tid, as_of=january)["USD"]["cash"] == Decimal("1.00")
    assert [(p.month, p.status) for p in ledger.periods(db, tenant_id=tid)] == [("2026-01", "closed")]
