"""Invoice composition and lifecycle: lines to totals, exactly, and the moves an invoice may make.

An invoice is composed from lines whose amounts were each computed exactly and rounded once
(pricing, proration). Composition then follows SCENARIOS.md: a coupon's discount is allocated
to the lines it applies to by largest remainder, before tax; each line's tax is computed on
its discounted amount and rounded once; totals are sums of lines:

    subtotal = Σ amount        discount = Σ discount        tax = Σ tax
    total = subtotal − discount + exclusive tax
    amount_due = total − credit applied        amount_remaining = amount_due − paid − credited

Statuses: draft → open (finalized: numbered, frozen) → paid | void | uncollectible, and an
uncollectible invoice may still be paid or voided. A draft with nothing to pay finalizes
straight to paid when the tenant says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from accrual.domain import discounts, money, taxes
from accrual.domain.errors import Conflict, InvalidInput
from accrual.domain.periods import Period


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class LineKind(enum.StrEnum):
    FEE = "fee"  # a flat fee for a whole period
    PRORATION = "proration"  # a flat fee for part of a period, or a change's credit (negative)
    USAGE = "usage"
    MINIMUM = "minimum"  # a metered charge's minimum-spend true-up
    LATE_USAGE = "late_usage"  # usage that arrived after its period was invoiced
    ONE_OFF = "one_off"  # added to a draft by hand


ALLOWED_MOVES: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.OPEN, InvoiceStatus.PAID}),
    InvoiceStatus.OPEN: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}),
    InvoiceStatus.UNCOLLECTIBLE: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID}),
    InvoiceStatus.PAID: frozenset(),
    InvoiceStatus.VOID: frozenset(),
}


class InvoiceStateConflict(Conflict):
    title = "Invoice cannot do that in its status"


class InvalidCredit(InvalidInput):
    title = "Credit note not possible"


class InvalidPayment(InvalidInput):
    title = "Payment not possible"


def check_move(status: InvoiceStatus, to: InvoiceStatus, *, number: str | None) -> None:
    """Raise `InvoiceStateConflict` unless an invoice in `status` may move to `to`."""
    if to not in ALLOWED_MOVES[status]:
        name = number or "draft"
        raise InvoiceStateConflict(
            f"invoice {name} is {status}; it cannot become {to}",
            context={"invoice_status": status.value},
        )


def format_number(prefix: str, sequence: int) -> str:
    """An invoice or credit-note number: the tenant's prefix and six digits at least."""
    return f"{prefix}{sequence:06d}"


@dataclasses.dataclass(frozen=True)
class DraftLine:
    """A line before discount and tax: its amount is exact at the currency's minor unit.

    `plan` is the plan code it bills (for a coupon's `applies_to`), when it bills one.
    `source` carries what the store keeps about where the line came from (plan version,
    meter, group, usage window) and `details` how it was computed; both pass through.
    """

    kind: LineKind
    charge: str | None
    description: str
    period: Period | None
    quantity: Decimal
    unit_amount: Decimal | None
    amount: Decimal
    plan: str | None = None
    source: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class LineTax:
    code: str
    name: str
    rate: Decimal
    inclusive: bool
    amount: Decimal


@dataclasses.dataclass(frozen=True)
class ComposedLine:
    line: DraftLine
    discount: Decimal
    taxes: tuple[LineTax, ...]

    @property
    def tax(self) -> Decimal:
        return sum((t.amount for t in self.taxes), Decimal(0))

    @property
    def exclusive_tax(self) -> Decimal:
        return sum((t.amount for t in self.taxes if not t.inclusive), Decimal(0))

    @property
    def total(self) -> Decimal:
        """What the line adds to the invoice's total: after discount, with exclusive tax."""
        return self.line.amount - self.discount + self.exclusive_tax


@dataclasses.dataclass(frozen=True)
class Composition:
    currency: money.Currency
    lines: tuple[ComposedLine, ...]
    coupon_applied: bool

    @property
    def subtotal(self) -> Decimal:
        return sum((c.line.amount for c in self.lines), Decimal(0))

    @property
    def discount(self) -> Decimal:
        return sum((c.discount for c in self.lines), Decimal(0))

    @property
    def tax(self) -> Decimal:
        return sum((c.tax for c in self.lines), Decimal(0))

    @property
    def total(self) -> Decimal:
        return sum((c.total for c in self.lines), Decimal(0))


def compose(
    lines: Sequence[DraftLine],
    *,
    currency: money.Currency,
    coupon: discounts.Coupon | None,
    tax_rates: Sequence[taxes.TaxRate],
) -> Composition:
    """Discount and tax `lines`; see the module's rules.

    The coupon (when given, and when it applies in `currency`) discounts the lines of the
    plans and charges it names; credits and zero lines are never discounted. Every line gets
    every one of `tax_rates`. Raises `money.InexactAmount` for a line amount finer than the
    currency's minor unit, and `taxes.MixedTaxInclusion` for inclusive and exclusive rates
    together.
    """
    for i, line in enumerate(lines):
        try:
            money.to_minor_units(line.amount, currency)
        except InvalidInput as error:
            error.field = f"/lines/{i}/amount"
            raise
    discount_of = [Decimal(0)] * len(lines)
    if coupon is not None and coupon.applies_in(currency):
        eligible = [
            line.kind is not LineKind.ONE_OFF
            and line.plan is not None
            and coupon.applies_to(plan=line.plan, charge=line.charge or "")
            for line in lines
        ]
        discount_of = discounts.allocate_discount(
            coupon=coupon, line_amounts=[line.amount for line in lines], eligible=eligible, currency=currency
        )
    composed = []
    for line, discount in zip(lines, discount_of, strict=True):
        amounts = taxes.line_taxes(amount=line.amount - discount, rates=tax_rates, currency=currency)
        composed.append(
            ComposedLine(
                line=line,
                discount=discount,
                taxes=tuple(
                    LineTax(rate.code, rate.name, rate.rate, rate.inclusive, amount)
                    for rate, amount in zip(tax_rates, amounts, strict=True)
                ),
            )
        )
    return Composition(
        currency=currency,
        lines=tuple(composed),
        coupon_applied=any(d != 0 for d in discount_of),
    )


@dataclasses.dataclass(frozen=True)
class Settlement:
    """How a finalized invoice's total is settled: credit balance used, and what is left to pay."""

    credit_applied: Decimal  # negative: a credit invoice adds to the balance
    amount_due: Decimal


def settle(*, total: Decimal, balance: Decimal) -> Settlement:
    """Apply the customer's credit `balance` (≥ 0) to `total`: as much as it covers.

    A negative total (credits exceed charges) is owed to the customer: nothing is due and the
    whole of it goes to the balance.
    """
    if balance < 0:
        raise InvalidInput(f"a credit balance is never negative, got {balance}", field="/balance")
    if total <= 0:
        return Settlement(credit_applied=total, amount_due=Decimal(0))
    used = min(balance, total)
    return Settlement(credit_applied=used, amount_due=total - used)


def due_at(finalized_at: dt.datetime, *, payment_terms_days: int) -> dt.datetime:
    """Net N: due N days after finalization (0: on receipt)."""
    return finalized_at + dt.timedelta(days=payment_terms_days)


# --- credit notes ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CreditableLine:
    """What of an invoice line can still be credited: its total and tax, less earlier credits."""

    line_no: int
    total: Decimal
    tax: Decimal


@dataclasses.dataclass(frozen=True)
class LineCredit:
    line_no: int
    amount: Decimal  # tax included
    tax: Decimal


def credit_lines(
    *,
    amount: Decimal | None,
    by_line: Mapping[int, Decimal] | None,
    lines: Sequence[CreditableLine],
    currency: money.Currency,
) -> list[LineCredit]:
    """Split a credit note over the invoice's lines; each credit carries its share of tax.

    By amount: in proportion to what each line can still be credited, by largest remainder.
    By line: exactly the amounts given per line number. Either way no line is credited more
    than it has left; the tax share of a line's credit is its tax in proportion, rounded
    half away from zero. Raises `InvalidCredit` naming the field otherwise.
    """
    remaining = {line.line_no: line for line in lines}
    if (amount is None) == (by_line is None):
        raise InvalidCredit("a credit note gives an amount or amounts by line, not both", field="/amount")
    if by_line is not None:
        wanted: dict[int, int] = {}
        for line_no, value in by_line.items():
            where = f"/lines/{line_no}"
            if line_no not in remaining:
                raise InvalidCredit(f"the invoice has no line {line_no} with anything to credit", field=where)
            minor = _positive_minor(value, currency, field=where)
            left = money.to_minor_units(remaining[line_no].total, currency)
            if minor > left:
                raise InvalidCredit(
                    f"line {line_no} has {money.Money(minor=left, currency=currency).amount} left to credit, "
                    f"not {value}",
                    field=where,
                )
            wanted[line_no] = minor
    else:
        minor = _positive_minor(amount or Decimal(0), currency, field="/amount")
        creditable = [line for line in lines if line.total > 0]
        left = sum(money.to_minor_units(line.total, currency) for line in creditable)
        if minor > left:
            available = money.Money(minor=left, currency=currency).amount
            raise InvalidCredit(f"the invoice has {available} left to credit, not {amount}", field="/amount")
        weights = [money.to_minor_units(line.total, currency) for line in creditable]
        shares = money.allocate(minor, weights)
        wanted = {line.line_no: share for line, share in zip(creditable, shares, strict=True) if share}
    credits = []
    for line_no, minor in sorted(wanted.items()):
        line = remaining[line_no]
        total_minor = money.to_minor_units(line.total, currency)
        tax = Decimal(0)
        if total_minor:
            tax = money.round_half_up_to_minor(Fraction(minor, total_minor) * Fraction(line.tax), currency)
        credits.append(LineCredit(line_no, money.Money(minor=minor, currency=currency).amount, tax))
    return credits


def _positive_minor(value: Decimal, currency: money.Currency, *, field: str) -> int:
    try:
        minor = money.to_minor_units(value, currency)
    except InvalidInput as error:
        error.field = field
        raise
    if minor <= 0:
        raise InvalidCredit(f"a credit is above zero, got {value}", field=field)
    return minor
