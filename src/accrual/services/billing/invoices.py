"""Invoices: composed at billing points, edited as drafts, finalized, voided, marked uncollectible.

Every operation is one unit of work with its audit record and outbox events. Finalizing
takes the next number from the tenant's locked counter row (gap-free, in commit order),
applies the customer's credit balance, and freezes the invoice: from then on the database
refuses any change to its lines and amounts.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa

from accrual.domain import codes, invoices, money
from accrual.domain.errors import NotFound
from accrual.domain.invoices import DraftLine, InvoiceStatus, LineKind
from accrual.services import ledger
from accrual.services import subscriptions as subscription_service
from accrual.services.billing import compose, run
from accrual.services.billing.compose import Billing
from accrual.services.billing.views import InvoiceView, views_of
from accrual.services.unit_of_work import Actor, UnitOfWork, read_only, unit_of_work
from accrual.store import ids
from accrual.store import invoices as store
from accrual.store import subscriptions as subscription_store
from accrual.store.database import TransactionSource
from accrual.store.pagination import Page, fetch_page
from accrual.store.schema import invoices as invoices_table

BILLING = run.BILLING


class InvoiceOperation(Protocol):
    """An operation on one invoice (finalize, void, ...), as the API and CLI call it."""

    def __call__(
        self,
        db: TransactionSource,
        *,
        tenant_id: uuid.UUID,
        invoice_id: uuid.UUID,
        actor: Actor,
        now: dt.datetime,
    ) -> InvoiceView: ...


class InvoiceNotFound(NotFound):
    title = "Invoice not found"


class InvoiceLineNotFound(NotFound):
    title = "Invoice line not found"


# --- views -----------------------------------------------------------------------------------


def views_of_rows(db: TransactionSource, rows: Sequence[sa.Row[Any]]) -> list[InvoiceView]:
    with read_only(db) as conn:
        return views_of(conn, rows)


def _view(conn: sa.Connection, row: sa.Row[Any]) -> InvoiceView:
    return views_of(conn, [row])[0]


def _require(
    conn: sa.Connection, tenant_id: uuid.UUID, invoice_id: uuid.UUID, *, for_update: bool
) -> sa.Row[Any]:
    row = store.get(conn, tenant_id=tenant_id, invoice_id=invoice_id, for_update=for_update)
    if row is None:
        raise InvoiceNotFound(f"no invoice {invoice_id}")
    return row


def _reload(uow: UnitOfWork, invoice_id: uuid.UUID) -> sa.Row[Any]:
    return _require(uow.conn, uow.tenant_id, invoice_id, for_update=False)


def get_invoice(db: TransactionSource, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> InvoiceView:
    with read_only(db) as conn:
        return _view(conn, _require(conn, tenant_id, invoice_id, for_update=False))


def find_invoice(db: TransactionSource, *, tenant_id: uuid.UUID, reference: str) -> InvoiceView:
    """An invoice by its id or its number."""
    with read_only(db) as conn:
        row = store.get_by_number(conn, tenant_id=tenant_id, number=reference)
        if row is None:
            try:
                row = store.get(conn, tenant_id=tenant_id, invoice_id=uuid.UUID(reference))
            except ValueError:
                row = None
        if row is None:
            raise InvoiceNotFound(f"no invoice {reference!r}")
        return _view(conn, row)


def list_invoices(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    customer_id: uuid.UUID | None = None,
    subscription_id: uuid.UUID | None = None,
    status: str | None = None,
    cursor: str | None,
    limit: int,
) -> Page[InvoiceView]:
    query = store.select_invoices(tenant_id=tenant_id)
    if customer_id is not None:
        query = query.where(invoices_table.c.customer_id == customer_id)
    if subscription_id is not None:
        query = query.where(invoices_table.c.subscription_id == subscription_id)
    if status is not None:
        try:
            query = query.where(invoices_table.c.status == InvoiceStatus(status).value)
        except ValueError:
            raise codes.InvalidValue(
                f"status is one of {', '.join(s.value for s in InvoiceStatus)}", field="status"
            ) from None
    with read_only(db) as conn:
        page = fetch_page(
            conn,
            query,
            invoices_table.c.invoice_id,
            cursor=cursor,
            limit=limit,
            descending=False,
            to_item=lambda row: row,
            key_of=lambda row: str(row.invoice_id),
            parse_key=uuid.UUID,
        )
        return Page(items=views_of(conn, page.items), next_cursor=page.next_cursor)


# --- composing -------------------------------------------------------------------------------


def _subscription(uow: UnitOfWork, invoice: sa.Row[Any], *, lock: bool) -> sa.Row[Any] | None:
    if invoice.subscription_id is None:
        return None
    return subscription_store.get(
        uow.conn,
        tenant_id=uow.tenant_id,
        subscription_id=invoice.subscription_id,
        lock="wait" if lock else None,
    )


def recompose(
    uow: UnitOfWork, invoice: sa.Row[Any], billing: Billing, *, subscription: sa.Row[Any] | None
) -> None:
    """Compose a draft again from its fixed lines, fresh usage and unbilled late events."""
    current = store.lines_of(uow.conn, tenant_id=uow.tenant_id, invoice_ids=[invoice.invoice_id])
    lines: list[DraftLine] = compose.stored_fixed_lines(
        uow.conn, current[invoice.invoice_id], tenant_id=uow.tenant_id, currency=billing.currency
    )
    if invoice.billing_point_id is not None and subscription is not None:
        point = store.get_point(uow.conn, tenant_id=uow.tenant_id, billing_point_id=invoice.billing_point_id)
        if point is not None:
            lines += compose.point_usage_lines(
                uow.conn, billing, subscription=subscription, usage=point.usage
            )
    if subscription is not None:
        store.release_late_claims(uow.conn, tenant_id=uow.tenant_id, invoice_id=invoice.invoice_id)
        lines += compose.late_usage_lines(
            uow.conn, billing, subscription=subscription, invoice_id=invoice.invoice_id
        )
    compose.write_composition(
        uow,
        invoice,
        lines,
        billing,
        coupon=compose.coupon_for(uow.conn, invoice=invoice, subscription=subscription),
    )


def bill_point(
    db: TransactionSource, *, tenant_id: uuid.UUID, billing_point_id: uuid.UUID, now: dt.datetime
) -> uuid.UUID | None:
    """Compose the invoice of one billing point (and finalize it when there is no grace period),
    dated at the point. Idempotent: a point already billed changes nothing and gives None, as
    does a point with no line to bill; otherwise the invoice's id."""
    with read_only(db) as conn:
        point = store.get_point(conn, tenant_id=tenant_id, billing_point_id=billing_point_id)
    if point is None:
        raise LookupError(f"no billing point {billing_point_id}")
    billed = run.bill_points(db, tenant_id=tenant_id, point_ids=[billing_point_id], at=point.at)
    return billed.get(billing_point_id)


def finalize_draft(
    db: TransactionSource, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> InvoiceView:
    """Finalize a draft now: compose it afresh (usage to this moment), number it, freeze it."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        probe = _require(uow.conn, tenant_id, invoice_id, for_update=False)
        subscription = _subscription(uow, probe, lock=True)
        invoice = _require(uow.conn, tenant_id, invoice_id, for_update=True)
        invoices.check_move(InvoiceStatus(invoice.status), InvoiceStatus.OPEN, number=invoice.number)
        _on_clock(uow, invoice)
        billing = Billing.load(uow.conn, tenant_id=tenant_id, customer_id=invoice.customer_id)
        recompose(uow, invoice, billing, subscription=subscription)
        invoice = _reload(uow, invoice_id)
        if not store.lines_of(uow.conn, tenant_id=tenant_id, invoice_ids=[invoice_id])[invoice_id]:
            raise invoices.InvoiceStateConflict(
                "an invoice without lines cannot be finalized", field="/lines"
            )
        (view,) = run.finalize(uow, [invoice], {invoice.customer_id: billing})
        return view


# --- editing drafts --------------------------------------------------------------------------


def _on_clock(uow: UnitOfWork, invoice: sa.Row[Any]) -> None:
    """Act as of the customer's clock (a test clock's time, or the real one)."""
    uow.now = subscription_service.effective_now(
        uow.conn, tenant_id=uow.tenant_id, test_clock_id=invoice.test_clock_id, now=uow.now
    )


def _draft(uow: UnitOfWork, invoice_id: uuid.UUID) -> tuple[sa.Row[Any], sa.Row[Any] | None]:
    probe = _require(uow.conn, uow.tenant_id, invoice_id, for_update=False)
    subscription = _subscription(uow, probe, lock=True)
    invoice = _require(uow.conn, uow.tenant_id, invoice_id, for_update=True)
    _on_clock(uow, invoice)
    if invoice.status != InvoiceStatus.DRAFT:
        raise invoices.InvoiceStateConflict(
            f"invoice {invoice.number} is {invoice.status}: only a draft can be edited",
            context={"invoice_status": invoice.status},
        )
    return invoice, subscription


def _edited(
    uow: UnitOfWork,
    invoice: sa.Row[Any],
    subscription: sa.Row[Any] | None,
    action: str,
    before: Mapping[str, Any],
) -> InvoiceView:
    billing = Billing.load(uow.conn, tenant_id=uow.tenant_id, customer_id=invoice.customer_id)
    recompose(uow, invoice, billing, subscription=subscription)
    view = _view(uow.conn, _reload(uow, invoice.invoice_id))
    uow.changed(
        action, entity_type="invoice", entity_id=str(invoice.invoice_id), before=before, after=view.snapshot()
    )
    return view


def _parsed(value: str | int | Decimal, *, field: str) -> Decimal:
    try:
        return money.parse_decimal(value)
    except money.InvalidNumber as error:
        error.field = field
        raise


def add_line(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    invoice_id: uuid.UUID,
    spec: Mapping[str, object],
    actor: Actor,
    now: dt.datetime,
) -> InvoiceView:
    """Add a one-off line to a draft: {description, amount, quantity?} (amount is the line's total)."""
    codes.only_keys(spec, ("description", "amount", "quantity"), pointer="", what="an invoice line")
    description = spec.get("description")
    if not isinstance(description, str) or not 1 <= len(description.strip()) <= 500:
        raise codes.InvalidValue("description is text of 1 to 500 characters", field="/description")
    raw_amount = codes.required(spec, "amount", pointer="", what="an invoice line")
    if isinstance(raw_amount, bool) or not isinstance(raw_amount, str | int | Decimal):
        raise money.InvalidNumber(f"{raw_amount!r} is not an exact decimal amount", field="/amount")
    amount = _parsed(raw_amount, field="/amount")
    raw_quantity = spec.get("quantity", 1)
    if isinstance(raw_quantity, bool) or not isinstance(raw_quantity, str | int | Decimal):
        raise money.InvalidNumber(f"{raw_quantity!r} is not an exact decimal quantity", field="/quantity")
    quantity = _parsed(raw_quantity, field="/quantity")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        invoice, subscription = _draft(uow, invoice_id)
        currency = money.currency(invoice.currency)
        try:
            minor = money.to_minor_units(amount, currency)
        except money.InexactAmount as error:
            error.field = "/amount"
            raise
        before = _view(uow.conn, invoice).snapshot()
        lines = store.lines_of(uow.conn, tenant_id=tenant_id, invoice_ids=[invoice_id])[invoice_id]
        store.insert_lines(
            uow.conn,
            [
                {
                    "tenant_id": tenant_id,
                    "invoice_id": invoice_id,
                    "line_no": max((line.line_no for line in lines), default=0) + 1,
                    "kind": LineKind.ONE_OFF.value,
                    "charge": None,
                    "description": description.strip(),
                    "period_start": None,
                    "period_end": None,
                    "quantity": quantity,
                    "unit_amount": None,
                    "amount": minor,
                    "discount": 0,
                    "tax": 0,
                    "taxes": [],
                    "plan_version_id": None,
                    "meter_id": None,
                    "usage_group": None,
                    "window_start": None,
                    "window_end": None,
                    "details": {"added_by": str(actor)},
                }
            ],
        )
        return _edited(uow, invoice, subscription, "invoice.updated", before)


def remove_line(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    invoice_id: uuid.UUID,
    line_no: int,
    actor: Actor,
    now: dt.datetime,
) -> InvoiceView:
    """Remove a one-off line from a draft (computed lines are recomputed, not removed)."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        invoice, subscription = _draft(uow, invoice_id)
        before = _view(uow.conn, invoice).snapshot()
        lines = store.lines_of(uow.conn, tenant_id=tenant_id, invoice_ids=[invoice_id])[invoice_id]
        found = next((line for line in lines if line.line_no == line_no), None)
        if found is None:
            raise InvoiceLineNotFound(f"invoice has no line {line_no}")
        if found.kind != LineKind.ONE_OFF:
            raise invoices.InvoiceStateConflict(
                f"line {line_no} is a {found.kind} line computed by billing; only one-off lines are removed",
                field="/line_no",
            )
        uow.conn.execute(
            sa.text("delete from invoice_lines where tenant_id = :t and invoice_id = :i and line_no = :n"),
            {"t": tenant_id, "i": invoice_id, "n": line_no},
        )
        return _edited(uow, invoice, subscription, "invoice.updated", before)


def refresh_draft(
    db: TransactionSource, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> InvoiceView:
    """Rate a draft's usage again, with every event counted so far."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        invoice, subscription = _draft(uow, invoice_id)
        return _edited(uow, invoice, subscription, "invoice.updated", _view(uow.conn, invoice).snapshot())


def delete_draft(
    db: TransactionSource, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> None:
    """Delete a draft. Its billing point stays handled (its lines are not billed again); its
    late events are released to the next invoice."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        invoice, _ = _draft(uow, invoice_id)
        before = _view(uow.conn, invoice).snapshot()
        store.delete_draft(uow.conn, tenant_id=tenant_id, invoice_id=invoice_id)
        uow.changed(
            "invoice.deleted", entity_type="invoice", entity_id=str(invoice_id), before=before, after=None
        )


# --- status moves ----------------------------------------------------------------------------


def _move(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    invoice_id: uuid.UUID,
    to: InvoiceStatus,
    stamp_column: str,
    event: str,
    actor: Actor,
    now: dt.datetime,
) -> InvoiceView:
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        invoice = _require(uow.conn, tenant_id, invoice_id, for_update=True)
        _on_clock(uow, invoice)
        invoices.check_move(InvoiceStatus(invoice.status), to, number=invoice.number)
        before = _view(uow.conn, invoice).snapshot()
        store.update(
            uow.conn,
            tenant_id=tenant_id,
            invoice_id=invoice_id,
            values={"status": to.value, stamp_column: uow.now, "updated_at": uow.now},
        )
        if to is InvoiceStatus.UNCOLLECTIBLE:
            ledger.post_written_off(uow, invoice)
        view = _view(uow.conn, _reload(uow, invoice_id))
        uow.changed(
            event, entity_type="invoice", entity_id=str(invoice_id), before=before, after=view.snapshot()
        )
        return view


def void_invoice(
    db: TransactionSource, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> InvoiceView:
    """Void an open (or uncollectible) invoice: nothing more is owed on it, and its lines are
    not billed again. Payments already made on it stay with the customer as credit."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        invoice = _require(uow.conn, tenant_id, invoice_id, for_update=True)
        _on_clock(uow, invoice)
        invoices.check_move(InvoiceStatus(invoice.status), InvoiceStatus.VOID, number=invoice.number)
        before = _view(uow.conn, invoice).snapshot()
        # Back to the balance: what was paid and the credit used on it; a credit invoice's
        # negative total, which went into the balance, comes out of it again.
        refund = invoice.amount_paid + invoice.credit_applied
        if refund:
            store.lock_customer_balance(uow.conn, tenant_id=tenant_id, customer_id=invoice.customer_id)
            store.add_balance_entry(
                uow.conn,
                {
                    "tenant_id": tenant_id,
                    "entry_id": ids.new_id(),
                    "customer_id": invoice.customer_id,
                    "currency": invoice.currency,
                    "amount": refund,
                    "source": "invoice",
                    "source_id": invoice_id,
                    "created_at": uow.now,
                },
            )
        store.update(
            uow.conn,
            tenant_id=tenant_id,
            invoice_id=invoice_id,
            values={"status": InvoiceStatus.VOID.value, "voided_at": uow.now, "updated_at": uow.now},
        )
        ledger.post_voided(uow, invoice)
        view = _view(uow.conn, _reload(uow, invoice_id))
        uow.changed(
            "invoice.voided",
            entity_type="invoice",
            entity_id=str(invoice_id),
            before=before,
            after=view.snapshot(),
        )
        return view


def mark_uncollectible(
    db: TransactionSource, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> InvoiceView:
    """Mark an open invoice uncollectible (written off); it may still be paid or voided later."""
    return _move(
        db,
        tenant_id=tenant_id,
        invoice_id=invoice_id,
        to=InvoiceStatus.UNCOLLECTIBLE,
        stamp_column="uncollectible_at",
        event="invoice.marked_uncollectible",
        actor=actor,
        now=now,
    )
