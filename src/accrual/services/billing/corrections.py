"""Corrections and money in: credit notes against finalized invoices, payments, balances.

A credit note is a document of its own, numbered gap-free like invoices: it reduces what an
open invoice still asks for, and whatever it credits beyond that (all of it on a paid
invoice) goes to the customer's credit balance, which later invoices use when they finalize.
A payment settles an invoice; paying more than remains goes to the balance too. Nothing here
edits a finalized invoice's contents: only its status and what was paid and credited move.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from accrual.domain import codes, invoices, money
from accrual.domain.errors import NotFound
from accrual.domain.invoices import InvoiceStatus
from accrual.services import ledger
from accrual.services import subscriptions as subscription_service
from accrual.services.billing.invoices import InvoiceNotFound
from accrual.services.billing.views import CreditNoteView, InvoiceView, PaymentView, views_of
from accrual.services.unit_of_work import Actor, UnitOfWork, read_only, unit_of_work
from accrual.store import customers as customer_store
from accrual.store import ids
from accrual.store import invoices as store
from accrual.store import tenants as tenant_store
from accrual.store.database import TransactionSource

PAYMENT_METHODS = ("manual", "bank_transfer", "card", "check", "cash", "other")


class CreditNoteNotFound(NotFound):
    title = "Credit note not found"


def _decimal(value: object, *, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise money.InvalidNumber(f"{value!r} is not an exact decimal amount", field=field)
    try:
        return money.parse_decimal(value)
    except money.InvalidNumber as error:
        error.field = field
        raise


def _invoice_for_update(uow: UnitOfWork, reference: str | uuid.UUID) -> sa.Row[Any]:
    row = None
    if isinstance(reference, uuid.UUID):
        row = store.get(uow.conn, tenant_id=uow.tenant_id, invoice_id=reference, for_update=True)
    else:
        found = store.get_by_number(uow.conn, tenant_id=uow.tenant_id, number=reference)
        if found is not None:
            row = store.get(uow.conn, tenant_id=uow.tenant_id, invoice_id=found.invoice_id, for_update=True)
    if row is None:
        raise InvoiceNotFound(f"no invoice {reference}", field="/invoice")
    uow.now = subscription_service.effective_now(
        uow.conn, tenant_id=uow.tenant_id, test_clock_id=row.test_clock_id, now=uow.now
    )
    return row


def _credit_balance(
    uow: UnitOfWork, invoice: sa.Row[Any], amount: int, *, source: str, source_id: uuid.UUID
) -> None:
    store.add_balance_entry(
        uow.conn,
        {
            "tenant_id": uow.tenant_id,
            "entry_id": ids.new_id(),
            "customer_id": invoice.customer_id,
            "currency": invoice.currency,
            "amount": amount,
            "source": source,
            "source_id": source_id,
            "created_at": uow.now,
        },
    )


def _remaining(invoice: sa.Row[Any]) -> int:
    left: int = invoice.amount_due - invoice.amount_paid - invoice.amount_credited
    return left


def _invoice_settled(
    uow: UnitOfWork, invoice: sa.Row[Any], *, paid: int, credited: int, before: Mapping[str, Any]
) -> None:
    """Record what was paid and credited on the invoice; a fully settled open one becomes paid."""
    amount_paid = invoice.amount_paid + paid
    amount_credited = invoice.amount_credited + credited
    values: dict[str, Any] = {
        "amount_paid": amount_paid,
        "amount_credited": amount_credited,
        "updated_at": uow.now,
    }
    settled = amount_paid + amount_credited >= invoice.amount_due
    if settled and invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
        values |= {"status": InvoiceStatus.PAID.value, "paid_at": uow.now}
    store.update(uow.conn, tenant_id=uow.tenant_id, invoice_id=invoice.invoice_id, values=values)
    view = views_of(
        uow.conn, [store.require(uow.conn, tenant_id=uow.tenant_id, invoice_id=invoice.invoice_id)]
    )[0]
    uow.record(
        "invoice.settled",
        entity_type="invoice",
        entity_id=str(invoice.invoice_id),
        before=before,
        after=view.snapshot(),
    )
    if "status" in values:
        uow.emit(
            "invoice.paid", entity_type="invoice", entity_id=str(invoice.invoice_id), payload=view.snapshot()
        )


# --- credit notes ----------------------------------------------------------------------------


def _creditable(
    uow: UnitOfWork, invoice: InvoiceView, currency: money.Currency
) -> list[invoices.CreditableLine]:
    """What each of the invoice's lines can still be credited, after its earlier credit notes."""
    credited_before: dict[int, tuple[int, int]] = {}
    for note in store.credit_notes_of(uow.conn, tenant_id=uow.tenant_id, invoice_ids=[invoice.invoice_id]):
        for line in note.lines:
            done, tax = credited_before.get(line["line_no"], (0, 0))
            credited_before[line["line_no"]] = (
                done + money.to_minor_units(Decimal(line["amount"]), currency),
                tax + money.to_minor_units(Decimal(line["tax"]), currency),
            )
    creditable = []
    for line in invoice.lines:
        done, done_tax = credited_before.get(line.line_no, (0, 0))
        total = money.to_minor_units(line.amount - line.discount, currency)
        exclusive = sum(Decimal(t["amount"]) for t in line.taxes if not t["inclusive"])
        total += money.to_minor_units(exclusive, currency)
        creditable.append(
            invoices.CreditableLine(
                line_no=line.line_no,
                total=money.Money(minor=total - done, currency=currency).amount,
                tax=money.Money(
                    minor=money.to_minor_units(line.tax, currency) - done_tax, currency=currency
                ).amount,
            )
        )
    return creditable


def create_credit_note(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    invoice: str | uuid.UUID,
    spec: Mapping[str, object],
    actor: Actor,
    now: dt.datetime,
) -> CreditNoteView:
    """Credit an open, paid or uncollectible invoice: {amount | lines: [{line_no, amount}], reason}.

    Never more than the invoice (or a line) has left to credit, tax included. Raises
    `InvalidCredit` naming the field, `InvoiceStateConflict` for a draft or void invoice.
    """
    codes.only_keys(spec, ("amount", "lines", "reason"), pointer="", what="a credit note")
    reason = spec.get("reason")
    if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= 500:
        raise codes.InvalidValue("reason is text of 1 to 500 characters", field="/reason")
    amount = _decimal(spec["amount"], field="/amount") if spec.get("amount") is not None else None
    by_line: dict[int, Decimal] | None = None
    raw_lines = spec.get("lines")
    if raw_lines is not None:
        if not isinstance(raw_lines, list) or not raw_lines:
            raise codes.InvalidValue("lines is a non-empty list of {line_no, amount}", field="/lines")
        by_line = {}
        for i, item in enumerate(raw_lines):
            if not isinstance(item, Mapping):
                raise codes.InvalidValue("each line is {line_no, amount}", field=f"/lines/{i}")
            codes.only_keys(item, ("line_no", "amount"), pointer=f"/lines/{i}", what="a credited line")
            line_no = codes.integer(item.get("line_no"), field=f"/lines/{i}/line_no", minimum=1)
            if line_no in by_line:
                raise codes.InvalidValue(f"line {line_no} is credited twice", field=f"/lines/{i}/line_no")
            by_line[line_no] = _decimal(item.get("amount"), field=f"/lines/{i}/amount")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        row = _invoice_for_update(uow, invoice)
        status = InvoiceStatus(row.status)
        if status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE):
            raise invoices.InvoiceStateConflict(
                f"invoice {row.number or 'draft'} is {status}: "
                "only a finalized, unvoided invoice is credited",
                context={"invoice_status": status.value},
            )
        currency = money.currency(row.currency)
        before = views_of(uow.conn, [row])[0]
        creditable = _creditable(uow, before, currency)
        credits = invoices.credit_lines(amount=amount, by_line=by_line, lines=creditable, currency=currency)
        total_minor = sum(money.to_minor_units(c.amount, currency) for c in credits)
        tax_minor = sum(money.to_minor_units(c.tax, currency) for c in credits)
        to_invoice = min(total_minor, max(_remaining(row), 0)) if status is not InvoiceStatus.PAID else 0
        to_balance = total_minor - to_invoice
        tenant = tenant_store.get(uow.conn, tenant_id)
        sequence = store.next_number(uow.conn, tenant_id=tenant_id, kind="credit_note")
        note_id = ids.new_id()
        note = store.insert_credit_note(
            uow.conn,
            {
                "tenant_id": tenant_id,
                "credit_note_id": note_id,
                "invoice_id": row.invoice_id,
                "customer_id": row.customer_id,
                "number": invoices.format_number(tenant.credit_note_prefix if tenant else "CN-", sequence),
                "currency": currency.code,
                "amount": total_minor,
                "tax": tax_minor,
                "to_invoice": to_invoice,
                "to_balance": to_balance,
                "reason": reason.strip(),
                "lines": [
                    {"line_no": c.line_no, "amount": format(c.amount, "f"), "tax": format(c.tax, "f")}
                    for c in credits
                ],
                "created_at": uow.now,
                "created_by": str(actor),
            },
        )
        if to_balance:
            store.lock_customer_balance(uow.conn, tenant_id=tenant_id, customer_id=row.customer_id)
            _credit_balance(uow, row, to_balance, source="credit_note", source_id=note_id)
        ledger.post_credit_note(
            uow,
            row,
            before,
            credit_note_id=note_id,
            number=note.number,
            credits=credits,
            to_invoice=to_invoice,
            to_balance=to_balance,
            written_off=status is InvoiceStatus.UNCOLLECTIBLE,
        )
        _invoice_settled(uow, row, paid=0, credited=to_invoice, before=before.snapshot())
        view = CreditNoteView.of(note, invoice=row.number, customer=before.customer)
        uow.changed(
            "credit_note.created",
            entity_type="credit_note",
            entity_id=str(note_id),
            before=None,
            after=view.snapshot(),
        )
        return view


def _credit_note_views(conn: sa.Connection, rows: list[sa.Row[Any]]) -> list[CreditNoteView]:
    if not rows:
        return []
    tenant_id = rows[0].tenant_id
    numbers = {
        r.invoice_id: r.number
        for r in conn.execute(
            sa.text(
                "select invoice_id, number from invoices where tenant_id = :t and invoice_id = any(:ids)"
            ),
            {"t": tenant_id, "ids": sorted({r.invoice_id for r in rows})},
        )
    }
    customers = customer_store.external_ids(
        conn, tenant_id=tenant_id, customer_ids={r.customer_id for r in rows}
    )
    return [
        CreditNoteView.of(r, invoice=numbers[r.invoice_id], customer=customers[r.customer_id]) for r in rows
    ]


def credit_notes_of(
    db: TransactionSource, *, tenant_id: uuid.UUID, invoice_ids: list[uuid.UUID]
) -> list[CreditNoteView]:
    with read_only(db) as conn:
        return _credit_note_views(
            conn, store.credit_notes_of(conn, tenant_id=tenant_id, invoice_ids=invoice_ids)
        )


def get_credit_note(
    db: TransactionSource, *, tenant_id: uuid.UUID, credit_note_id: uuid.UUID
) -> CreditNoteView:
    with read_only(db) as conn:
        row = store.get_credit_note(conn, tenant_id=tenant_id, credit_note_id=credit_note_id)
        if row is None:
            raise CreditNoteNotFound(f"no credit note {credit_note_id}")
        return _credit_note_views(conn, [row])[0]


# --- payments --------------------------------------------------------------------------------


def record_payment(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    invoice: str | uuid.UUID,
    spec: Mapping[str, object],
    actor: Actor,
    now: dt.datetime,
) -> PaymentView:
    """Record a payment on an invoice: {amount?, method?, outcome?, reference?, failure_reason?}.

    `amount` defaults to what remains; `outcome` succeeded (default) settles the invoice (a
    paid-in-full open invoice becomes paid; any overpayment goes to the customer's balance),
    failed records the attempt and emits `invoice.payment_failed`.
    """
    codes.only_keys(
        spec, ("amount", "method", "outcome", "reference", "failure_reason"), pointer="", what="a payment"
    )
    method = spec.get("method") or "manual"
    if method not in PAYMENT_METHODS:
        raise codes.InvalidValue(f"method is one of {', '.join(PAYMENT_METHODS)}", field="/method")
    outcome = spec.get("outcome") or "succeeded"
    if outcome not in ("succeeded", "failed"):
        raise codes.InvalidValue("outcome is succeeded or failed", field="/outcome")
    for key in ("reference", "failure_reason"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 500):
            raise codes.InvalidValue(f"{key} is text of at most 500 characters", field=f"/{key}")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        row = _invoice_for_update(uow, invoice)
        status = InvoiceStatus(row.status)
        if status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
            raise invoices.InvoiceStateConflict(
                f"invoice {row.number or 'draft'} is {status}: only an open or uncollectible invoice is paid",
                context={"invoice_status": status.value},
            )
        currency = money.currency(row.currency)
        remaining = _remaining(row)
        if spec.get("amount") is None:
            minor = remaining
        else:
            value = _decimal(spec["amount"], field="/amount")
            try:
                minor = money.to_minor_units(value, currency)
            except money.InexactAmount as error:
                error.field = "/amount"
                raise
        if minor <= 0:
            raise invoices.InvalidPayment(f"a payment is above zero, got {minor}", field="/amount")
        succeeded = outcome == "succeeded"
        to_invoice = min(minor, remaining) if succeeded else 0
        to_balance = minor - to_invoice if succeeded else 0
        before = views_of(uow.conn, [row])[0]
        payment_id = ids.new_id()
        payment = store.insert_payment(
            uow.conn,
            {
                "tenant_id": tenant_id,
                "payment_id": payment_id,
                "customer_id": row.customer_id,
                "invoice_id": row.invoice_id,
                "currency": currency.code,
                "amount": minor,
                "method": method,
                "outcome": outcome,
                "reference": spec.get("reference"),
                "failure_reason": spec.get("failure_reason") if not succeeded else None,
                "to_invoice": to_invoice,
                "to_balance": to_balance,
                "received_at": uow.now,
                "created_by": str(actor),
            },
        )
        view = PaymentView.of(payment, customer=before.customer, invoice=row.number)
        if not succeeded:
            uow.changed(
                "payment.failed",
                entity_type="payment",
                entity_id=str(payment_id),
                before=None,
                after=view.snapshot(),
            )
            uow.emit(
                "invoice.payment_failed",
                entity_type="invoice",
                entity_id=str(row.invoice_id),
                payload=before.snapshot(),
            )
            return view
        if to_balance:
            store.lock_customer_balance(uow.conn, tenant_id=tenant_id, customer_id=row.customer_id)
            _credit_balance(uow, row, to_balance, source="payment", source_id=payment_id)
        ledger.post_payment(
            uow,
            row,
            payment_id=payment_id,
            to_invoice=to_invoice,
            to_balance=to_balance,
            written_off=status is InvoiceStatus.UNCOLLECTIBLE,
        )
        _invoice_settled(uow, row, paid=to_invoice, credited=0, before=before.snapshot())
        uow.changed(
            "payment.succeeded",
            entity_type="payment",
            entity_id=str(payment_id),
            before=None,
            after=view.snapshot(),
        )
        return view


def payments_of(
    db: TransactionSource, *, tenant_id: uuid.UUID, invoice_ids: list[uuid.UUID]
) -> list[PaymentView]:
    with read_only(db) as conn:
        rows = store.payments_of(conn, tenant_id=tenant_id, invoice_ids=invoice_ids)
        if not rows:
            return []
        customers = customer_store.external_ids(
            conn, tenant_id=tenant_id, customer_ids={r.customer_id for r in rows}
        )
        numbers = {
            r.invoice_id: r.number
            for r in conn.execute(
                sa.text(
                    "select invoice_id, number from invoices where tenant_id = :t and invoice_id = any(:ids)"
                ),
                {"t": tenant_id, "ids": sorted({r.invoice_id for r in rows})},
            )
        }
        return [
            PaymentView.of(r, customer=customers[r.customer_id], invoice=numbers.get(r.invoice_id))
            for r in rows
        ]


def customer_balances(
    db: TransactionSource, *, tenant_id: uuid.UUID, customer_id: uuid.UUID
) -> dict[str, Decimal]:
    """The customer's credit balance per currency (positive: in its favour)."""
    with read_only(db) as conn:
        found = store.balances(conn, tenant_id=tenant_id, customer_id=customer_id)
    return {
        code: money.Money(minor=minor, currency=money.currency(code)).amount for code, minor in found.items()
    }
