"""Invoice composition: discount before tax, tax per line, totals as sums of lines."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accrual.domain import discounts, invoices, money, taxes
from accrual.domain.invoices import DraftLine, InvoiceStatus, LineKind

USD = money.currency("USD")
JPY = money.currency("JPY")


def line(
    amount: str, *, kind: LineKind = LineKind.FEE, plan: str | None = "pro", charge: str = "base"
) -> DraftLine:
    return DraftLine(
        kind=kind,
        charge=charge,
        description="x",
        period=None,
        quantity=Decimal(1),
        unit_amount=None,
        amount=Decimal(amount),
        plan=plan,
    )


def coupon(kind: str, value: str, **extra: object) -> discounts.Coupon:
    return discounts.parse_coupon(
        {"code": "C", "kind": kind, "value": value, "duration": "once", **extra}, pointer=""
    )


VAT20 = taxes.TaxRate(code="VAT20", name="VAT", rate=Decimal(20), inclusive=False)
INCL20 = taxes.TaxRate(code="IN20", name="VAT", rate=Decimal(20), inclusive=True)


def test_the_waterfall_of_the_shared_scenario() -> None:
    tax = taxes.TaxRate(code="T10", name="T10", rate=Decimal(10), inclusive=False)
    composed = invoices.compose(
        [line("50.00"), line("20.00", kind=LineKind.USAGE, charge="calls")],
        currency=USD,
        coupon=coupon("fixed", "10"),
        tax_rates=[tax],
    )
    assert [c.discount for c in composed.lines] == [Decimal("7.14"), Decimal("2.86")]
    assert [c.tax for c in composed.lines] == [Decimal("4.29"), Decimal("1.71")]
    assert (composed.subtotal, composed.discount, composed.tax, composed.total) == (
        Decimal("70.00"),
        Decimal("10.00"),
        Decimal("6.00"),
        Decimal("66.00"),
    )
    assert composed.coupon_applied


def test_inclusive_tax_is_inside_the_amount() -> None:
    composed = invoices.compose([line("12.00")], currency=USD, coupon=None, tax_rates=[INCL20])
    assert (composed.subtotal, composed.tax, composed.total) == (
        Decimal("12.00"),
        Decimal("2.00"),
        Decimal("12.00"),
    )


def test_credits_and_one_off_lines_are_not_discounted_but_are_taxed() -> None:
    composed = invoices.compose(
        [
            line("100.00"),
            line("-40.00", kind=LineKind.PRORATION),
            line("5.00", kind=LineKind.ONE_OFF, plan=None),
        ],
        currency=USD,
        coupon=coupon("percentage", "10"),
        tax_rates=[VAT20],
    )
    assert [c.discount for c in composed.lines] == [Decimal("10.00"), Decimal(0), Decimal(0)]
    assert [c.tax for c in composed.lines] == [Decimal("18.00"), Decimal("-8.00"), Decimal("1.00")]
    assert composed.total == Decimal("66.00")


def test_a_coupon_for_other_plans_or_currencies_discounts_nothing() -> None:
    only_basic = coupon("percentage", "50", applies_to={"plans": ["basic"]})
    assert invoices.compose([line("10.00")], currency=USD, coupon=only_basic, tax_rates=[]).discount == 0
    euros = coupon("fixed", "5", currency="EUR")
    composed = invoices.compose([line("10.00")], currency=USD, coupon=euros, tax_rates=[])
    assert (composed.discount, composed.coupon_applied) == (0, False)


def test_a_line_finer_than_the_currency_is_refused() -> None:
    with pytest.raises(money.InexactAmount) as caught:
        invoices.compose([line("1"), line("0.5")], currency=JPY, coupon=None, tax_rates=[])
    assert caught.value.field == "/lines/1/amount"


amounts = st.integers(min_value=-10_000, max_value=100_000).map(lambda m: Decimal(m).scaleb(-2))


@given(
    st.lists(amounts, min_size=1, max_size=8),
    st.sampled_from([None, "percentage", "fixed"]),
    st.sampled_from([[], [VAT20], [INCL20]]),
)
def test_totals_are_sums_of_lines(
    values: list[Decimal], kind: str | None, rates: list[taxes.TaxRate]
) -> None:
    chosen = None if kind is None else coupon(kind, "15" if kind == "percentage" else "37.50")
    composed = invoices.compose([line(str(v)) for v in values], currency=USD, coupon=chosen, tax_rates=rates)
    assert composed.subtotal == sum(values, Decimal(0))
    assert composed.total == sum((c.total for c in composed.lines), Decimal(0))
    exclusive = sum((c.exclusive_tax for c in composed.lines), Decimal(0))
    assert composed.total == composed.subtotal - composed.discount + exclusive
    for c in composed.lines:
        assert 0 <= c.discount <= max(c.line.amount, Decimal(0))
        assert c.discount == c.discount.quantize(Decimal("0.01"))


def test_settle_uses_the_balance_and_owes_credits() -> None:
    assert invoices.settle(total=Decimal(50), balance=Decimal(20)) == invoices.Settlement(
        Decimal(20), Decimal(30)
    )
    assert invoices.settle(total=Decimal(50), balance=Decimal(80)) == invoices.Settlement(
        Decimal(50), Decimal(0)
    )
    assert invoices.settle(total=Decimal(-5), balance=Decimal(0)) == invoices.Settlement(
        Decimal(-5), Decimal(0)
    )


def test_credit_by_amount_is_shared_with_tax() -> None:
    lines = [
        invoices.CreditableLine(1, Decimal("60.00"), Decimal("10.00")),
        invoices.CreditableLine(2, Decimal("40.00"), Decimal("0.00")),
    ]
    credits = invoices.credit_lines(amount=Decimal("10.00"), by_line=None, lines=lines, currency=USD)
    assert credits == [
        invoices.LineCredit(1, Decimal("6.00"), Decimal("1.00")),
        invoices.LineCredit(2, Decimal("4.00"), Decimal("0.00")),
    ]
    with pytest.raises(invoices.InvalidCredit) as caught:
        invoices.credit_lines(amount=None, by_line={2: Decimal("40.01")}, lines=lines, currency=USD)
    assert caught.value.field == "/lines/2"
    with pytest.raises(invoices.InvalidCredit):
        invoices.credit_lines(amount=Decimal(0), by_line=None, lines=lines, currency=USD)


@pytest.mark.parametrize(
    ("start", "to", "allowed"),
    [
        (InvoiceStatus.DRAFT, InvoiceStatus.OPEN, True),
        (InvoiceStatus.DRAFT, InvoiceStatus.VOID, False),
        (InvoiceStatus.OPEN, InvoiceStatus.VOID, True),
        (InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID, True),
        (InvoiceStatus.PAID, InvoiceStatus.VOID, False),
        (InvoiceStatus.VOID, InvoiceStatus.OPEN, False),
    ],
)
def test_moves(start: InvoiceStatus, to: InvoiceStatus, allowed: bool) -> None:
    if allowed:
        invoices.check_move(start, to, number="ACC-1")
    else:
        with pytest.raises(invoices.InvoiceStateConflict):
            invoices.check_move(start, to, number="ACC-1")
