"""Invoices, credit notes and payments as callers see them: exact decimals, RFC 3339 instants."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from accrual.domain import money
from accrual.domain.invoices import InvoiceStatus, LineKind
from accrual.domain.periods import Period
from accrual.store import customers as customer_store
from accrual.store import invoices as store
from accrual.store.schema import subscriptions as subscriptions_table


@functools.lru_cache(maxsize=4096)
def stamp(at: dt.datetime | None) -> str | None:
    """An instant as reports show it: RFC 3339 in UTC with a Z (cached: a billing run shows
    the same few instants, period ends and due dates, thousands of times)."""
    if at is None:
        return None
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def period_json(period: Period | None) -> dict[str, str | None] | None:
    if period is None:
        return None
    return {"start": stamp(period.start), "end": stamp(period.end)}


def amount_text(amount: Decimal, currency: money.Currency) -> str:
    """An amount with exactly the currency's decimals ("12.30", JPY "1200", KWD "0.875")."""
    if amount.is_finite():
        text = format(amount, "f")
        point = text.find(".")
        if (len(text) - point - 1 if point >= 0 else 0) == currency.exponent:
            # Already written at the minor unit ("-0.00" is zero, and shows as such).
            return text if amount != 0 else _zero_text(currency)
    return money.Money.from_decimal(amount, currency).format()


@functools.cache
def _zero_text(currency: money.Currency) -> str:
    return money.Money.zero(currency).format()


def _period(start: dt.datetime | None, end: dt.datetime | None) -> Period | None:
    return Period(start, end) if start is not None and end is not None else None


@dataclasses.dataclass(frozen=True)
class LineView:
    line_no: int
    kind: LineKind
    charge: str | None
    description: str
    period: Period | None
    quantity: Decimal
    unit_amount: Decimal | None
    amount: Decimal
    discount: Decimal
    tax: Decimal
    taxes: Sequence[Mapping[str, Any]]
    details: Mapping[str, Any]

    @classmethod
    def of(cls, row: sa.Row[Any], currency: money.Currency) -> LineView:
        minor = money.Money
        return cls(
            line_no=row.line_no,
            kind=LineKind(row.kind),
            charge=row.charge,
            description=row.description,
            period=_period(row.period_start, row.period_end),
            quantity=Decimal(row.quantity),
            unit_amount=None if row.unit_amount is None else Decimal(row.unit_amount),
            amount=minor(minor=row.amount, currency=currency).amount,
            discount=minor(minor=row.discount, currency=currency).amount,
            tax=minor(minor=row.tax, currency=currency).amount,
            taxes=list(row.taxes),
            details=dict(row.details),
        )

    def snapshot(self, currency: money.Currency) -> dict[str, Any]:
        found: dict[str, Any] = {
            "line_no": self.line_no,
            "kind": self.kind.value,
            "charge": self.charge,
            "description": self.description,
            "period": period_json(self.period),
            "quantity": money.format_quantity(self.quantity),
        }
        if self.unit_amount is not None:
            found["unit_amount"] = format(self.unit_amount, "f")
        return found | {
            "amount": amount_text(self.amount, currency),
            "discount": amount_text(self.discount, currency),
            "tax": amount_text(self.tax, currency),
            "taxes": [dict(t) for t in self.taxes],
        }


@dataclasses.dataclass(frozen=True)
class InvoiceView:
    invoice_id: uuid.UUID
    number: str | None
    status: InvoiceStatus
    reason: str
    customer_id: uuid.UUID
    customer: str
    subscription_id: uuid.UUID | None
    subscription: str | None
    currency: money.Currency
    period: Period | None
    created_at: dt.datetime
    finalize_at: dt.datetime | None
    finalized_at: dt.datetime | None
    due_at: dt.datetime | None
    paid_at: dt.datetime | None
    voided_at: dt.datetime | None
    uncollectible_at: dt.datetime | None
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal
    credit_applied: Decimal
    amount_due: Decimal
    amount_paid: Decimal
    amount_credited: Decimal
    seller: Mapping[str, Any]
    buyer: Mapping[str, Any]
    memo: str | None
    test_clock_id: uuid.UUID | None
    lines: tuple[LineView, ...]

    @property
    def amount_remaining(self) -> Decimal:
        if self.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID):
            return Decimal(0) if self.status is InvoiceStatus.VOID else self.total
        return self.amount_due - self.amount_paid - self.amount_credited

    @property
    def issued_at(self) -> dt.datetime:
        """The invoice's date: when it was finalized (a draft's: when it was composed)."""
        return self.finalized_at or self.created_at

    @classmethod
    def of(
        cls, row: sa.Row[Any], lines: Sequence[sa.Row[Any]], *, customer: str, subscription: str | None
    ) -> InvoiceView:
        currency = money.currency(row.currency)

        def amount(minor: int) -> Decimal:
            return money.Money(minor=minor, currency=currency).amount

        return cls(
            invoice_id=row.invoice_id,
            number=row.number,
            status=InvoiceStatus(row.status),
            reason=row.reason,
            customer_id=row.customer_id,
            customer=customer,
            subscription_id=row.subscription_id,
            subscription=subscription,
            currency=currency,
            period=_period(row.period_start, row.period_end),
            created_at=row.created_at,
            finalize_at=row.finalize_at,
            finalized_at=row.finalized_at,
            due_at=row.due_at,
            paid_at=row.paid_at,
            voided_at=row.voided_at,
            uncollectible_at=row.uncollectible_at,
            subtotal=amount(row.subtotal),
            discount=amount(row.discount),
            tax=amount(row.tax),
            total=amount(row.total),
            credit_applied=amount(row.credit_applied),
            amount_due=amount(row.amount_due),
            amount_paid=amount(row.amount_paid),
            amount_credited=amount(row.amount_credited),
            seller=dict(row.seller),
            buyer=dict(row.buyer),
            memo=row.memo,
            test_clock_id=row.test_clock_id,
            lines=tuple(LineView.of(line, currency) for line in lines),
        )

    def snapshot(self, *, lines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The invoice in the shape of the `accrual simulate` report, with more fields.

        `lines`: the snapshot of its lines, when the caller has it (from a view with the same
        lines): it is used as it is, not copied."""
        c = self.currency
        return {
            "id": str(self.invoice_id),
            "number": self.number,
            "customer": self.customer,
            "subscription": self.subscription,
            "status": self.status.value,
            "reason": self.reason,
            "currency": c.code,
            "issued_at": stamp(self.issued_at),
            "period": period_json(self.period),
            "lines": [line.snapshot(c) for line in self.lines] if lines is None else lines,
            "subtotal": amount_text(self.subtotal, c),
            "discount": amount_text(self.discount, c),
            "tax": amount_text(self.tax, c),
            "total": amount_text(self.total, c),
            "credit_applied": amount_text(self.credit_applied, c),
            "amount_due": amount_text(self.amount_due, c),
            "amount_paid": amount_text(self.amount_paid, c),
            "amount_credited": amount_text(self.amount_credited, c),
            "amount_remaining": amount_text(self.amount_remaining, c),
            "created_at": stamp(self.created_at),
            "finalize_at": stamp(self.finalize_at),
            "finalized_at": stamp(self.finalized_at),
            "due_at": stamp(self.due_at),
            "paid_at": stamp(self.paid_at),
            "voided_at": stamp(self.voided_at),
            "uncollectible_at": stamp(self.uncollectible_at),
            "memo": self.memo,
        }


@dataclasses.dataclass(frozen=True)
class CreditNoteView:
    credit_note_id: uuid.UUID
    number: str
    invoice_id: uuid.UUID
    invoice: str
    customer: str
    currency: money.Currency
    amount: Decimal
    tax: Decimal
    to_invoice: Decimal
    to_balance: Decimal
    reason: str
    lines: Sequence[Mapping[str, Any]]
    created_at: dt.datetime

    @classmethod
    def of(cls, row: sa.Row[Any], *, invoice: str, customer: str) -> CreditNoteView:
        currency = money.currency(row.currency)

        def amount(minor: int) -> Decimal:
            return money.Money(minor=minor, currency=currency).amount

        return cls(
            credit_note_id=row.credit_note_id,
            number=row.number,
            invoice_id=row.invoice_id,
            invoice=invoice,
            customer=customer,
            currency=currency,
            amount=amount(row.amount),
            tax=amount(row.tax),
            to_invoice=amount(row.to_invoice),
            to_balance=amount(row.to_balance),
            reason=row.reason,
            lines=list(row.lines),
            created_at=row.created_at,
        )

    def snapshot(self) -> dict[str, Any]:
        c = self.currency
        return {
            "id": str(self.credit_note_id),
            "number": self.number,
            "invoice": self.invoice,
            "customer": self.customer,
            "currency": c.code,
            "amount": amount_text(self.amount, c),
            "tax": amount_text(self.tax, c),
            "to_invoice": amount_text(self.to_invoice, c),
            "to_balance": amount_text(self.to_balance, c),
            "reason": self.reason,
            "lines": [dict(line) for line in self.lines],
            "created_at": stamp(self.created_at),
        }


@dataclasses.dataclass(frozen=True)
class PaymentView:
    payment_id: uuid.UUID
    customer: str
    invoice: str | None
    currency: money.Currency
    amount: Decimal
    method: str
    outcome: str
    reference: str | None
    failure_reason: str | None
    to_invoice: Decimal
    to_balance: Decimal
    received_at: dt.datetime

    @classmethod
    def of(cls, row: sa.Row[Any], *, customer: str, invoice: str | None) -> PaymentView:
        currency = money.currency(row.currency)

        def amount(minor: int) -> Decimal:
            return money.Money(minor=minor, currency=currency).amount

        return cls(
            payment_id=row.payment_id,
            customer=customer,
            invoice=invoice,
            currency=currency,
            amount=amount(row.amount),
            method=row.method,
            outcome=row.outcome,
            reference=row.reference,
            failure_reason=row.failure_reason,
            to_invoice=amount(row.to_invoice),
            to_balance=amount(row.to_balance),
            received_at=row.received_at,
        )

    def snapshot(self) -> dict[str, Any]:
        c = self.currency
        return {
            "id": str(self.payment_id),
            "customer": self.customer,
            "invoice": self.invoice,
            "currency": c.code,
            "amount": amount_text(self.amount, c),
            "method": self.method,
            "outcome": self.outcome,
            "reference": self.reference,
            "failure_reason": self.failure_reason,
            "to_invoice": amount_text(self.to_invoice, c),
            "to_balance": amount_text(self.to_balance, c),
            "received_at": stamp(self.received_at),
        }


def views_of(conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> list[InvoiceView]:
    """Views of invoice rows with their lines and their customers' and subscriptions' ids (3 queries)."""
    if not rows:
        return []
    tenant_id = rows[0].tenant_id
    lines = store.lines_of(conn, tenant_id=tenant_id, invoice_ids=[r.invoice_id for r in rows])
    customers = customer_store.external_ids(
        conn, tenant_id=tenant_id, customer_ids={r.customer_id for r in rows}
    )
    subscription_ids = {r.subscription_id for r in rows if r.subscription_id is not None}
    subscriptions: dict[uuid.UUID, str] = {}
    if subscription_ids:
        for row in conn.execute(
            sa.select(subscriptions_table.c.subscription_id, subscriptions_table.c.external_id).where(
                subscriptions_table.c.tenant_id == tenant_id,
                subscriptions_table.c.subscription_id.in_(sorted(subscription_ids)),
            )
        ):
            subscriptions[row.subscription_id] = row.external_id or str(row.subscription_id)
    return [
        InvoiceView.of(
            r,
            lines[r.invoice_id],
            customer=customers[r.customer_id],
            subscription=subscriptions.get(r.subscription_id) if r.subscription_id else None,
        )
        for r in rows
    ]
