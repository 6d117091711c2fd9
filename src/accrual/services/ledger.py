"""The ledger as services see it: postings made from invoices, payments, credit notes, voids
and write-offs in their own transactions (`domain/ledger.py` has the rules), and balances.

A fact is posted once: an entry's kind and source (the invoice, payment or credit note) are
unique per tenant, so posting a fact again posts nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import re
import types
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from accrual.domain import ledger, money
from accrual.domain.errors import Conflict, InvalidInput
from accrual.domain.invoices import LineCredit
from accrual.services.billing.views import InvoiceView, LineView, stamp
from accrual.services.unit_of_work import Actor, UnitOfWork, read_only, unit_of_work
from accrual.store import customers as customer_store
from accrual.store import ids
from accrual.store import ledger as store
from accrual.store import tenants as tenant_store
from accrual.store.database import TransactionSource


def _minor(amount: Decimal, currency: money.Currency) -> int:
    return money.to_minor_units(amount, currency)


def _inclusive_tax(line: LineView, currency: money.Currency) -> int:
    return sum(_minor(Decimal(t["amount"]), currency) for t in line.taxes if t["inclusive"])


def _invoice_line(line: LineView, currency: money.Currency) -> ledger.InvoiceLine:
    return ledger.InvoiceLine(
        line_no=line.line_no,
        revenue=_minor(line.amount - line.discount, currency) - _inclusive_tax(line, currency),
        tax=_minor(line.tax, currency),
        has_period=line.period is not None,
    )


def finalized(view: InvoiceView, *, amount_due: int, credit_applied: int) -> store.Posting:
    """The posting of an invoice finalized (`view`: its lines; amounts in minor units)."""
    lines = [_invoice_line(line, view.currency) for line in view.lines]
    return store.Posting(
        kind="invoice_finalized",
        currency=view.currency.code,
        legs=ledger.invoice_finalized(lines, amount_due=amount_due, credit_applied=credit_applied),
        source_id=view.invoice_id,
        description=f"invoice {view.number} finalized",
        customer_id=view.customer_id,
        invoice_id=view.invoice_id,
    )


def _post(uow: UnitOfWork, postings: Sequence[store.Posting]) -> None:
    """Post facts that happened now; in a closed month, at the start of the next open one."""
    if not postings:
        return
    tz, month, closed = store.posting_month(uow.conn, tenant_id=uow.tenant_id, at=uow.now)
    if month not in closed:
        store.post(uow.conn, tenant_id=uow.tenant_id, at=uow.now, postings=postings)
        return
    while month in closed:
        month = _next_month(month)
    store.post(
        uow.conn, tenant_id=uow.tenant_id, at=_month_start(month, tz), postings=postings, original_at=uow.now
    )


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _month_start(month: dt.date, tz: str) -> dt.datetime:
    return dt.datetime(month.year, month.month, 1, tzinfo=ZoneInfo(tz)).astimezone(dt.UTC)


def post_finalized(uow: UnitOfWork, postings: Sequence[store.Posting]) -> None:
    _post(uow, postings)


def _post_about(
    uow: UnitOfWork,
    invoice: sa.Row[Any],
    *,
    kind: str,
    source_id: uuid.UUID,
    description: str,
    legs: tuple[ledger.Leg, ...],
) -> None:
    """Post a fact about a finalized invoice (its row)."""
    posting = store.Posting(
        kind=kind,
        currency=invoice.currency,
        legs=legs,
        source_id=source_id,
        description=description,
        customer_id=invoice.customer_id,
        invoice_id=invoice.invoice_id,
    )
    _post(uow, [posting])


def post_payment(
    uow: UnitOfWork,
    invoice: sa.Row[Any],
    *,
    payment_id: uuid.UUID,
    to_invoice: int,
    to_balance: int,
    written_off: bool,
) -> None:
    """A successful payment on `invoice` (its row before the payment)."""
    _post_about(
        uow,
        invoice,
        kind="payment",
        source_id=payment_id,
        description=f"payment on invoice {invoice.number}",
        legs=ledger.payment(to_invoice=to_invoice, to_balance=to_balance, written_off=written_off),
    )


def post_credit_note(
    uow: UnitOfWork,
    invoice: sa.Row[Any],
    view: InvoiceView,
    *,
    credit_note_id: uuid.UUID,
    number: str,
    credits: Sequence[LineCredit],
    to_invoice: int,
    to_balance: int,
    written_off: bool,
) -> None:
    """A credit note on `invoice` (`view`: the invoice with its lines): each credited line's
    revenue comes back from what of it is still deferred first: what the line deferred when
    the invoice was finalized, less what earlier credit notes took back from it."""
    currency = money.currency(invoice.currency)
    balances = store.invoice_balances(uow.conn, tenant_id=uow.tenant_id, invoice_id=invoice.invoice_id)
    deferred = {
        line.line_no: line.revenue if line.has_period else 0
        for line in (_invoice_line(line, currency) for line in view.lines)
    }
    lines = [
        ledger.CreditedLine(
            line_no=c.line_no,
            amount=_minor(c.amount, currency),
            tax=_minor(c.tax, currency),
            deferred=deferred[c.line_no] - balances.get((ledger.Account.DEFERRED_REVENUE, c.line_no), 0),
        )
        for c in credits
    ]
    legs = ledger.credit_note(lines, to_invoice=to_invoice, to_balance=to_balance, written_off=written_off)
    _post_about(
        uow,
        invoice,
        kind="credit_note",
        source_id=credit_note_id,
        description=f"credit note {number} on invoice {invoice.number}",
        legs=legs,
    )


def post_written_off(uow: UnitOfWork, invoice: sa.Row[Any]) -> None:
    """`invoice` (its row before) marked uncollectible: what remained on it is bad debt."""
    remaining = invoice.amount_due - invoice.amount_paid - invoice.amount_credited
    _post_about(
        uow,
        invoice,
        kind="invoice_written_off",
        source_id=invoice.invoice_id,
        description=f"invoice {invoice.number} written off",
        legs=ledger.written_off(remaining=max(remaining, 0)),
    )


def post_voided(uow: UnitOfWork, invoice: sa.Row[Any]) -> None:
    """`invoice` voided: all it still has on revenue, tax, receivable and bad debt reversed."""
    balances = store.invoice_balances(uow.conn, tenant_id=uow.tenant_id, invoice_id=invoice.invoice_id)
    _post_about(
        uow,
        invoice,
        kind="invoice_voided",
        source_id=invoice.invoice_id,
        description=f"invoice {invoice.number} voided",
        legs=ledger.voided(balances),
    )


def trial_balance(
    db: TransactionSource, *, tenant_id: uuid.UUID, as_of: dt.datetime | None = None
) -> dict[str, dict[str, Decimal]]:
    """Every account's balance by currency, on its normal side, as of an instant (exact
    decimals at the currency's minor unit); every account is listed, zero or not."""
    with read_only(db) as conn:
        found = store.trial_balance(conn, tenant_id=tenant_id, as_of=as_of)
    report: dict[str, dict[str, Decimal]] = {}
    for code in sorted({currency for currency, _ in found}):
        c = money.currency(code)
        report[code] = {
            account.value: money.Money(
                minor=ledger.on_normal_side(account, found.get((code, account), 0)), currency=c
            ).amount
            for account in ledger.Account
        }
    return report


def is_balanced(totals: Mapping[str, Mapping[str, Decimal]]) -> bool:
    """Debits equal credits in every currency of a trial balance (normal-side figures)."""
    for accounts in totals.values():
        debits = sum((v for a, v in accounts.items() if ledger.Account(a).normal_debit), Decimal(0))
        credits = sum((v for a, v in accounts.items() if not ledger.Account(a).normal_debit), Decimal(0))
        if debits != credits:
            return False
    return True


@dataclasses.dataclass(frozen=True)
class Entry:
    """A posted entry: its lines as (account, currency, amount with debits positive, invoice line)."""

    entry_id: uuid.UUID
    kind: str
    source_id: uuid.UUID
    effective_at: dt.datetime
    lines: tuple[tuple[str, str, Decimal, int | None], ...]


def invoice_entries(db: TransactionSource, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> list[Entry]:
    """The entries posted for an invoice, in the order they were posted."""
    with read_only(db) as conn:
        rows = store.entries_of(conn, tenant_id=tenant_id, invoice_id=invoice_id)
    entries: dict[uuid.UUID, Entry] = {}
    for row in rows:
        line = (
            row.account,
            row.currency,
            money.Money(minor=row.amount, currency=money.currency(row.currency)).amount,
            row.invoice_line_no,
        )
        found = entries.get(row.entry_id)
        entries[row.entry_id] = (
            Entry(row.entry_id, row.kind, row.source_id, row.effective_at, (line,))
            if found is None
            else dataclasses.replace(found, lines=(*found.lines, line))
        )
    return list(entries.values())


@dataclasses.dataclass(frozen=True)
class AgingRow:
    """A customer's receivable in one currency, by aging bucket (`ledger.AGING_BUCKETS`)."""

    customer: str
    currency: str
    buckets: dict[str, Decimal]

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), Decimal(0))


@dataclasses.dataclass(frozen=True)
class Aging:
    as_of: dt.datetime
    customers: list[AgingRow]

    def snapshot(self) -> dict[str, Any]:
        """The aging as the API and the CLI show it: amounts as exact decimal text."""
        return {
            "as_of": self.as_of,
            "customers": [
                {
                    "customer": row.customer,
                    "currency": row.currency,
                    "buckets": {bucket: format(v, "f") for bucket, v in row.buckets.items()},
                    "total": format(row.total, "f"),
                }
                for row in self.customers
            ],
            "totals": {
                code: {key: format(v, "f") for key, v in totals.items()}
                for code, totals in self.totals().items()
            },
        }

    def totals(self) -> dict[str, dict[str, Decimal]]:
        """Per currency, each bucket's total and `total`: what the trial balance shows as
        accounts receivable at the same instant."""
        found: dict[str, dict[str, Decimal]] = {}
        for row in self.customers:
            by_bucket = found.setdefault(
                row.currency, dict.fromkeys((*ledger.AGING_BUCKETS, "total"), Decimal(0))
            )
            for bucket, amount in row.buckets.items():
                by_bucket[bucket] += amount
            by_bucket["total"] += row.total
        return found


def ar_aging(db: TransactionSource, *, tenant_id: uuid.UUID, as_of: dt.datetime) -> Aging:
    """Accounts receivable as of an instant, per customer and currency, by whole days past each
    invoice's due date: current (not yet due), 1–30, 31–60, 61–90, over 90. Read from the
    ledger, so its totals are the trial balance's receivable at the same instant."""
    with read_only(db) as conn:
        rows = store.receivable_by_invoice(conn, tenant_id=tenant_id, as_of=as_of)
        names = customer_store.external_ids(
            conn, tenant_id=tenant_id, customer_ids={r.customer_id for r in rows}
        )
    found: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        days = (as_of - row.due_at) // dt.timedelta(days=1) if row.due_at is not None else 0
        buckets = found.setdefault(
            (names[row.customer_id], row.currency), dict.fromkeys(ledger.AGING_BUCKETS, 0)
        )
        buckets[ledger.aging_bucket(days)] += int(row.amount)
    return Aging(
        as_of=as_of,
        customers=[
            AgingRow(
                customer=customer,
                currency=code,
                buckets={
                    bucket: money.Money(minor=minor, currency=money.currency(code)).amount
                    for bucket, minor in buckets.items()
                },
            )
            for (customer, code), buckets in sorted(found.items(), key=lambda item: (item[0][1], item[0][0]))
        ],
    )


def aging_csv(aging: Aging) -> str:
    """The aging as CSV: a row per customer and currency, then a total row per currency."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["currency", "customer", *ledger.AGING_BUCKETS, "total"])
    for row in aging.customers:
        writer.writerow(
            [
                row.currency,
                row.customer,
                *(format(row.buckets[b], "f") for b in ledger.AGING_BUCKETS),
                format(row.total, "f"),
            ]
        )
    for code, totals in aging.totals().items():
        writer.writerow(
            [code, "(total)", *(format(totals[b], "f") for b in (*ledger.AGING_BUCKETS, "total"))]
        )
    return out.getvalue()


# --- accounting periods ------------------------------------------------------------------------


class PeriodNotClosable(Conflict):
    title = "Accounting period cannot do that"


@dataclasses.dataclass(frozen=True)
class PeriodView:
    """A month's state: closed or open, and its latest change."""

    month: str
    status: Literal["closed", "open"]
    changed_at: dt.datetime
    changed_by: str
    reason: str | None

    def snapshot(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "status": self.status,
            "changed_at": stamp(self.changed_at),
            "changed_by": self.changed_by,
            "reason": self.reason,
        }


def _month(value: str) -> dt.date:
    found = re.fullmatch(r"(\d{4})-(\d{2})", value)
    if found is None or not 1 <= int(found[2]) <= 12:
        raise InvalidInput(f"month is YYYY-MM, got {value!r}", field="month")
    return dt.date(int(found[1]), int(found[2]), 1)


def _view(row: Any) -> PeriodView:
    return PeriodView(
        month=row.month.strftime("%Y-%m"),
        status="closed" if row.action == "close" else "open",
        changed_at=row.changed_at,
        changed_by=row.actor,
        reason=row.reason,
    )


def _change(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    month: str,
    close: bool,
    reason: str | None,
    actor: Actor,
    now: dt.datetime,
) -> PeriodView:
    first = _month(month)
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        store.lock_periods(uow.conn, tenant_id=tenant_id)
        changes = store.period_changes(uow.conn, tenant_id=tenant_id, month=first)
        before = _view(changes[-1]) if changes else None
        closed = before is not None and before.status == "closed"
        if close and closed:
            raise PeriodNotClosable(f"{month} is already closed", context={"period_status": "closed"})
        if not close and not closed:
            raise PeriodNotClosable(f"{month} is not closed", context={"period_status": "open"})
        if close:
            tenant = tenant_store.get(uow.conn, tenant_id)
            assert tenant is not None  # noqa: S101 - the unit of work's tenant exists
            if _month_start(_next_month(first), tenant.timezone) > uow.now:
                raise PeriodNotClosable(
                    f"{month} has not ended in the tenant's time zone ({tenant.timezone})",
                    context={"period_status": "open"},
                )
        row = {
            "tenant_id": tenant_id,
            "change_id": ids.new_id(),
            "month": first,
            "action": "close" if close else "reopen",
            "reason": reason,
            "actor": str(actor),
            "changed_at": uow.now,
        }
        store.add_period_change(uow.conn, row)
        after = _view(types.SimpleNamespace(**row))
        uow.changed(
            "accounting_period.closed" if close else "accounting_period.reopened",
            entity_type="accounting_period",
            entity_id=after.month,
            before=before.snapshot() if before else None,
            after=after.snapshot(),
        )
        return after


def close_period(
    db: TransactionSource, *, tenant_id: uuid.UUID, month: str, actor: Actor, now: dt.datetime
) -> PeriodView:
    """Close a month (YYYY-MM, in the tenant's time zone) that has ended: no entry may be
    effective in it afterwards; a fact that falls in it is posted at the start of the next
    open month, with its own instant kept. Raises `PeriodNotClosable` when it is closed
    already or has not ended, `InvalidInput` for a malformed month."""
    return _change(db, tenant_id=tenant_id, month=month, close=True, reason=None, actor=actor, now=now)


def reopen_period(
    db: TransactionSource, *, tenant_id: uuid.UUID, month: str, reason: str, actor: Actor, now: dt.datetime
) -> PeriodView:
    """Reopen a closed month, saying why (audited, like the close)."""
    if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= 500:
        raise InvalidInput("reason is text of 1 to 500 characters", field="/reason")
    return _change(
        db, tenant_id=tenant_id, month=month, close=False, reason=reason.strip(), actor=actor, now=now
    )


def periods(db: TransactionSource, *, tenant_id: uuid.UUID) -> list[PeriodView]:
    """Every month ever closed, with its state now (its latest change), oldest first."""
    with read_only(db) as conn:
        changes = store.period_changes(conn, tenant_id=tenant_id)
    latest: dict[dt.date, sa.Row[Any]] = {}
    for row in changes:
        latest[row.month] = row
    return [_view(row) for _, row in sorted(latest.items())]
