"""The double-entry ledger's posting rules: which accounts each financial fact moves, and by how much.

Amounts are integer minor units of one currency, debits positive and credits negative; every
posting's legs sum to zero (`Posting` refuses otherwise, and the database checks again at
commit). Accounts, on their normal side:

- assets (debit): `accounts_receivable`, `cash`, `unbilled_receivable`;
- liabilities (credit): `deferred_revenue`, `tax_payable`, `customer_credit`;
- revenue (credit): `revenue`; its contras (debit): `contra_revenue`, `bad_debt`.

The facts:

- **An invoice finalized**: accounts receivable for what is due, the customer's credit for
  what the balance paid (a credit invoice's negative total goes to it instead); tax payable
  for the invoice's tax; the revenue of its lines (each line's amount less its discount and
  any inclusive tax) deferred for lines with a service period, recognized at once for the
  others. Discounts reduce the revenue of the lines they were allocated to. (Each line's own
  share follows from the invoice line; legs of later facts that touch one line name it.)
- **A payment**: cash for all of it, against receivable for what settles the invoice and the
  customer's credit for any overpayment; a payment on a written-off invoice recovers bad debt.
- **A credit note**: its tax back from tax payable; each credited line's revenue back from
  what of it is still deferred first, the rest from recognized revenue (contra revenue), as
  Stripe splits it; against receivable for what reduces the invoice (bad debt when the
  invoice was written off) and the customer's credit for the rest.
- **A write-off** (uncollectible): bad debt for what remained, against receivable.
- **A void**: everything the invoice still has on its revenue, tax, receivable and bad-debt
  accounts is reversed, and what is left (what was paid on it, and credit used) goes to the
  customer's credit, as the void gives it back.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence


class Account(enum.StrEnum):
    ACCOUNTS_RECEIVABLE = "accounts_receivable"
    CASH = "cash"
    REVENUE = "revenue"
    DEFERRED_REVENUE = "deferred_revenue"
    UNBILLED_RECEIVABLE = "unbilled_receivable"
    TAX_PAYABLE = "tax_payable"
    CUSTOMER_CREDIT = "customer_credit"
    CONTRA_REVENUE = "contra_revenue"
    BAD_DEBT = "bad_debt"

    @property
    def normal_debit(self) -> bool:
        """Assets and contra-revenue accounts grow with debits; the others with credits."""
        return self in _DEBIT_NORMAL


_DEBIT_NORMAL = frozenset(
    {
        Account.ACCOUNTS_RECEIVABLE,
        Account.CASH,
        Account.UNBILLED_RECEIVABLE,
        Account.CONTRA_REVENUE,
        Account.BAD_DEBT,
    }
)

# The accounts a void reverses for its invoice (customer credit takes what is left).
REVERSED_BY_VOID = (
    Account.REVENUE,
    Account.DEFERRED_REVENUE,
    Account.CONTRA_REVENUE,
    Account.TAX_PAYABLE,
    Account.ACCOUNTS_RECEIVABLE,
    Account.BAD_DEBT,
)


class UnbalancedPosting(ValueError):
    """A posting whose legs do not sum to zero: a bug in a posting rule."""


@dataclasses.dataclass(frozen=True)
class Leg:
    """An amount on an account: debit positive, credit negative; `invoice_line_no` names the
    invoice line it belongs to, when it belongs to one."""

    account: Account
    amount: int
    invoice_line_no: int | None = None


def balanced(legs: Sequence[Leg]) -> tuple[Leg, ...]:
    """The legs without zero amounts; raises `UnbalancedPosting` unless they sum to zero."""
    total = sum(leg.amount for leg in legs)
    if total != 0:
        raise UnbalancedPosting(f"legs sum to {total}, not 0: {legs}")
    return tuple(leg for leg in legs if leg.amount != 0)


@dataclasses.dataclass(frozen=True)
class InvoiceLine:
    """What finalizing posts for one invoice line: its revenue (after discount, without
    inclusive tax), its tax, and whether it has a service period (revenue deferred over it)."""

    line_no: int
    revenue: int
    tax: int
    has_period: bool


def invoice_finalized(
    lines: Sequence[InvoiceLine], *, amount_due: int, credit_applied: int
) -> tuple[Leg, ...]:
    """An invoice finalized: receivable and credit used against revenue and tax, by line."""
    return balanced(
        [
            Leg(Account.ACCOUNTS_RECEIVABLE, amount_due),
            Leg(Account.CUSTOMER_CREDIT, credit_applied),
            Leg(Account.TAX_PAYABLE, -sum(line.tax for line in lines)),
            Leg(Account.DEFERRED_REVENUE, -sum(line.revenue for line in lines if line.has_period)),
            Leg(Account.REVENUE, -sum(line.revenue for line in lines if not line.has_period)),
        ]
    )


def payment(*, to_invoice: int, to_balance: int, written_off: bool) -> tuple[Leg, ...]:
    """A successful payment: cash against the invoice's receivable (or bad debt recovered,
    for a written-off invoice) and the customer's credit for any overpayment."""
    settled = Account.BAD_DEBT if written_off else Account.ACCOUNTS_RECEIVABLE
    return balanced(
        [
            Leg(Account.CASH, to_invoice + to_balance),
            Leg(settled, -to_invoice),
            Leg(Account.CUSTOMER_CREDIT, -to_balance),
        ]
    )


@dataclasses.dataclass(frozen=True)
class CreditedLine:
    """A credit note's share of an invoice line (tax included), and what of the line's
    revenue is still deferred."""

    line_no: int
    amount: int
    tax: int
    deferred: int


def credit_note(
    lines: Sequence[CreditedLine], *, to_invoice: int, to_balance: int, written_off: bool
) -> tuple[Leg, ...]:
    """A credit note: tax and revenue back (deferred first, then contra revenue), against the
    invoice's receivable (bad debt, when written off) and the customer's credit."""
    settled = Account.BAD_DEBT if written_off else Account.ACCOUNTS_RECEIVABLE
    legs = [Leg(settled, -to_invoice), Leg(Account.CUSTOMER_CREDIT, -to_balance)]
    for line in lines:
        revenue = line.amount - line.tax
        from_deferred = max(min(revenue, line.deferred), 0) if revenue > 0 else 0
        legs.append(Leg(Account.TAX_PAYABLE, line.tax))
        legs.append(Leg(Account.DEFERRED_REVENUE, from_deferred, line.line_no))
        legs.append(Leg(Account.CONTRA_REVENUE, revenue - from_deferred, line.line_no))
    return balanced(legs)


def written_off(*, remaining: int) -> tuple[Leg, ...]:
    """An invoice marked uncollectible: what remained on it becomes bad debt."""
    return balanced([Leg(Account.BAD_DEBT, remaining), Leg(Account.ACCOUNTS_RECEIVABLE, -remaining)])


def voided(invoice_balances: Mapping[tuple[Account, int | None], int]) -> tuple[Leg, ...]:
    """An invoice voided, given its balances by (account, invoice line) on every account:
    the revenue, tax, receivable and bad-debt ones reversed, the rest to the customer's credit."""
    legs = [
        Leg(account, -amount, line_no)
        for (account, line_no), amount in sorted(
            invoice_balances.items(), key=lambda item: (item[0][0].value, item[0][1] or 0)
        )
        if account in REVERSED_BY_VOID
    ]
    legs.append(Leg(Account.CUSTOMER_CREDIT, -sum(leg.amount for leg in legs)))
    return balanced(legs)


def on_normal_side(account: Account, amount: int) -> int:
    """A balance (debits positive) as reports show it: on the account's normal side."""
    return amount if account.normal_debit else -amount


# Accounts receivable aging: days past an invoice's due date, as of an instant.
AGING_BUCKETS = ("current", "1_30", "31_60", "61_90", "over_90")


def aging_bucket(days_past_due: int) -> str:
    """The aging bucket of an amount this many whole days past its due date (0 or less:
    not yet due, `current`)."""
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "1_30"
    if days_past_due <= 60:
        return "31_60"
    if days_past_due <= 90:
        return "61_90"
    return "over_90"
