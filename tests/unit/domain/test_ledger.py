"""The ledger's posting rules: every posting balances, each fact moves the accounts it should."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accrual.domain import ledger
from accrual.domain.ledger import Account, Leg


def _by_account(legs: tuple[Leg, ...]) -> dict[Account, int]:
    found: dict[Account, int] = {}
    for leg in legs:
        found[leg.account] = found.get(leg.account, 0) + leg.amount
    return found


def test_a_posting_that_does_not_balance_is_refused() -> None:
    with pytest.raises(ledger.UnbalancedPosting):
        ledger.balanced([Leg(Account.CASH, 100), Leg(Account.ACCOUNTS_RECEIVABLE, -99)])


def test_zero_legs_are_left_out() -> None:
    legs = ledger.balanced(
        [Leg(Account.CASH, 100), Leg(Account.CUSTOMER_CREDIT, 0), Leg(Account.REVENUE, -100)]
    )
    assert [leg.account for leg in legs] == [Account.CASH, Account.REVENUE]


def test_an_invoice_defers_period_lines_and_recognizes_the_others() -> None:
    # $50 fee for January and a $20 one-off, $10 discount on the fee, 10% tax; $5 of credit used.
    legs = ledger.invoice_finalized(
        [
            ledger.InvoiceLine(line_no=1, revenue=4000, tax=400, has_period=True),
            ledger.InvoiceLine(line_no=2, revenue=2000, tax=200, has_period=False),
        ],
        amount_due=6100,
        credit_applied=500,
    )
    assert _by_account(legs) == {
        Account.ACCOUNTS_RECEIVABLE: 6100,
        Account.CUSTOMER_CREDIT: 500,
        Account.TAX_PAYABLE: -600,
        Account.DEFERRED_REVENUE: -4000,
        Account.REVENUE: -2000,
    }


def test_a_credit_note_takes_revenue_back_from_what_is_deferred_first() -> None:
    legs = ledger.credit_note(
        [ledger.CreditedLine(line_no=1, amount=1100, tax=100, deferred=600)],
        to_invoice=700,
        to_balance=400,
        written_off=False,
    )
    assert _by_account(legs) == {
        Account.ACCOUNTS_RECEIVABLE: -700,
        Account.CUSTOMER_CREDIT: -400,
        Account.TAX_PAYABLE: 100,
        Account.DEFERRED_REVENUE: 600,
        Account.CONTRA_REVENUE: 400,
    }


def test_a_payment_on_a_written_off_invoice_recovers_bad_debt() -> None:
    written = ledger.written_off(remaining=1000)
    paid = ledger.payment(to_invoice=1000, to_balance=50, written_off=True)
    total = _by_account(written + paid)
    assert total == {
        Account.BAD_DEBT: 0,
        Account.ACCOUNTS_RECEIVABLE: -1000,
        Account.CASH: 1050,
        Account.CUSTOMER_CREDIT: -50,
    }


def test_a_void_reverses_the_invoice_and_gives_back_what_was_paid() -> None:
    finalized = ledger.invoice_finalized(
        [ledger.InvoiceLine(line_no=1, revenue=9000, tax=1000, has_period=True)],
        amount_due=10000,
        credit_applied=0,
    )
    paid = ledger.payment(to_invoice=3000, to_balance=0, written_off=False)
    balances: dict[tuple[Account, int | None], int] = {}
    for leg in finalized + paid:
        key = (leg.account, leg.invoice_line_no)
        balances[key] = balances.get(key, 0) + leg.amount
    voided = ledger.voided(balances)
    after = _by_account(finalized + paid + voided)
    assert after[Account.ACCOUNTS_RECEIVABLE] == 0
    assert after[Account.DEFERRED_REVENUE] == after[Account.TAX_PAYABLE] == 0
    assert after[Account.CASH] == 3000
    assert after[Account.CUSTOMER_CREDIT] == -3000  # the payment is now the customer's credit


amounts = st.integers(min_value=-(10**9), max_value=10**9)


@given(
    st.lists(st.tuples(amounts, st.integers(0, 10**8), st.booleans()), min_size=1, max_size=6),
    st.integers(0, 10**9),
)
def test_every_finalized_invoice_balances(lines: list[tuple[int, int, bool]], balance: int) -> None:
    invoice_lines = [
        ledger.InvoiceLine(line_no=i + 1, revenue=revenue, tax=tax, has_period=period)
        for i, (revenue, tax, period) in enumerate(lines)
    ]
    total = sum(line.revenue + line.tax for line in invoice_lines)
    credit = total if total <= 0 else min(balance, total)
    legs = ledger.invoice_finalized(invoice_lines, amount_due=total - credit, credit_applied=credit)
    assert sum(leg.amount for leg in legs) == 0
    assert 0 not in {leg.amount for leg in legs}


def test_normal_sides() -> None:
    assert ledger.on_normal_side(Account.CASH, 100) == 100
    assert ledger.on_normal_side(Account.REVENUE, -100) == 100
    assert ledger.on_normal_side(Account.CONTRA_REVENUE, 100) == 100
