"""Invoices, their documents, credit notes, payments and customer balances."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from accrual.api import billing_schemas as s
from accrual.api.deps import ReadContext, WriteContext, reader, writer
from accrual.api.schemas import ListOf, list_of
from accrual.domain.access import Scope
from accrual.services import customers
from accrual.services.billing import corrections, documents, invoices
from accrual.store.database import TransactionSource
from accrual.store.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", tags=["invoices"])

Reader = Annotated[ReadContext, Depends(reader(Scope.READ))]
Writer = Annotated[WriteContext, Depends(writer(Scope.WRITE))]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
PDF: dict[str, dict[str, object]] = {"application/pdf": {}}
HTML: dict[str, dict[str, object]] = {"text/html": {}}


def _dump(body: BaseModel) -> dict[str, object]:
    dumped: dict[str, object] = body.model_dump(exclude_unset=True, mode="python")
    return dumped


@router.get("/invoices", response_model=ListOf[s.InvoiceOut], summary="List invoices, oldest first")
def list_invoices(  # noqa: PLR0917 - FastAPI passes query parameters as arguments
    ctx: Reader,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    customer: uuid.UUID | None = None,
    subscription: uuid.UUID | None = None,
    status: Literal["draft", "open", "paid", "void", "uncollectible"] | None = None,
) -> ListOf[s.InvoiceOut]:
    page = invoices.list_invoices(
        ctx.db,
        tenant_id=ctx.principal.tenant_id,
        customer_id=customer,
        subscription_id=subscription,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return list_of(s.InvoiceOut, page, s.InvoiceOut.of)


def _document(ctx: ReadContext, invoice_id: uuid.UUID, *, html: bool, locale: str) -> Response:
    body = documents.render_invoice(
        ctx.db, tenant_id=ctx.principal.tenant_id, invoice_id=invoice_id, html=html, locale=locale
    )
    return Response(body, media_type="text/html; charset=utf-8" if html else "application/pdf")


Locale = Annotated[str, Query(pattern=r"^[a-z]{2}(_[A-Z]{2})?$", description="e.g. en_US, de_DE, fr_FR")]


@router.get(
    "/invoices/{invoice_id}.pdf",
    response_class=Response,
    responses={200: {"content": PDF}},
    summary="An invoice as PDF",
)
def invoice_pdf(invoice_id: uuid.UUID, ctx: Reader, locale: Locale = documents.DEFAULT_LOCALE) -> Response:
    return _document(ctx, invoice_id, html=False, locale=locale)


@router.get(
    "/invoices/{invoice_id}.html",
    response_class=Response,
    responses={200: {"content": HTML}},
    summary="An invoice as HTML",
)
def invoice_html(invoice_id: uuid.UUID, ctx: Reader, locale: Locale = documents.DEFAULT_LOCALE) -> Response:
    return _document(ctx, invoice_id, html=True, locale=locale)


@router.get("/invoices/{invoice_id}", response_model=s.InvoiceOut, summary="One invoice with its lines")
def get_invoice(invoice_id: uuid.UUID, ctx: Reader) -> s.InvoiceOut:
    return s.InvoiceOut.of(
        invoices.get_invoice(ctx.db, tenant_id=ctx.principal.tenant_id, invoice_id=invoice_id)
    )


def _operation(ctx: WriteContext, invoice_id: uuid.UUID, operation: invoices.InvoiceOperation) -> Response:
    return ctx.run(
        lambda db: s.InvoiceOut.of(
            operation(
                db,
                tenant_id=ctx.principal.tenant_id,
                invoice_id=invoice_id,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.post("/invoices/{invoice_id}/finalize", response_model=s.InvoiceOut, summary="Finalize a draft now")
def finalize(invoice_id: uuid.UUID, ctx: Writer) -> Response:
    return _operation(ctx, invoice_id, invoices.finalize_draft)


@router.post("/invoices/{invoice_id}/void", response_model=s.InvoiceOut, summary="Void an open invoice")
def void(invoice_id: uuid.UUID, ctx: Writer) -> Response:
    return _operation(ctx, invoice_id, invoices.void_invoice)


@router.post(
    "/invoices/{invoice_id}/mark_uncollectible",
    response_model=s.InvoiceOut,
    summary="Write an open invoice off",
)
def mark_uncollectible(invoice_id: uuid.UUID, ctx: Writer) -> Response:
    return _operation(ctx, invoice_id, invoices.mark_uncollectible)


@router.post(
    "/invoices/{invoice_id}/refresh", response_model=s.InvoiceOut, summary="Rate a draft's usage again"
)
def refresh(invoice_id: uuid.UUID, ctx: Writer) -> Response:
    return _operation(ctx, invoice_id, invoices.refresh_draft)


@router.post(
    "/invoices/{invoice_id}/lines", response_model=s.InvoiceOut, summary="Add a one-off line to a draft"
)
def add_line(invoice_id: uuid.UUID, body: s.LineCreate, ctx: Writer) -> Response:
    spec = _dump(body)
    return ctx.run(
        lambda db: s.InvoiceOut.of(
            invoices.add_line(
                db,
                tenant_id=ctx.principal.tenant_id,
                invoice_id=invoice_id,
                spec=spec,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.delete(
    "/invoices/{invoice_id}/lines/{line_no}",
    response_model=s.InvoiceOut,
    summary="Remove a one-off line from a draft",
)
def remove_line(invoice_id: uuid.UUID, line_no: int, ctx: Writer) -> Response:
    return ctx.run(
        lambda db: s.InvoiceOut.of(
            invoices.remove_line(
                db,
                tenant_id=ctx.principal.tenant_id,
                invoice_id=invoice_id,
                line_no=line_no,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )


@router.delete("/invoices/{invoice_id}", status_code=204, summary="Delete a draft")
def delete_draft(invoice_id: uuid.UUID, ctx: Writer) -> Response:
    def handler(db: TransactionSource) -> bytes:
        invoices.delete_draft(
            db,
            tenant_id=ctx.principal.tenant_id,
            invoice_id=invoice_id,
            actor=ctx.principal.actor,
            now=ctx.now,
        )
        return b"{}"

    ctx.run(handler)
    return Response(status_code=204)


def _correction(
    ctx: WriteContext, invoice_id: uuid.UUID, body: BaseModel, operation: Any, out: Any
) -> Response:
    """Run a correction (a credit note, a payment) on an invoice; answer 201 with what it made."""
    spec = _dump(body)
    return ctx.run(
        lambda db: out.of(
            operation(
                db,
                tenant_id=ctx.principal.tenant_id,
                invoice=invoice_id,
                spec=spec,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        ),
        status_code=201,
    )


@router.post(
    "/invoices/{invoice_id}/credit_notes",
    status_code=201,
    response_model=s.CreditNoteOut,
    tags=["credit notes"],
    summary="Credit a finalized invoice",
)
def create_credit_note(invoice_id: uuid.UUID, body: s.CreditNoteCreate, ctx: Writer) -> Response:
    return _correction(ctx, invoice_id, body, corrections.create_credit_note, s.CreditNoteOut)


@router.get(
    "/invoices/{invoice_id}/credit_notes",
    response_model=list[s.CreditNoteOut],
    tags=["credit notes"],
    summary="Credit notes of an invoice",
)
def invoice_credit_notes(invoice_id: uuid.UUID, ctx: Reader) -> list[s.CreditNoteOut]:
    invoices.get_invoice(ctx.db, tenant_id=ctx.principal.tenant_id, invoice_id=invoice_id)
    return [
        s.CreditNoteOut.of(n)
        for n in corrections.credit_notes_of(
            ctx.db, tenant_id=ctx.principal.tenant_id, invoice_ids=[invoice_id]
        )
    ]


@router.get(
    "/credit_notes/{credit_note_id}.pdf",
    response_class=Response,
    responses={200: {"content": PDF}},
    tags=["credit notes"],
    summary="A credit note as PDF",
)
def credit_note_pdf(
    credit_note_id: uuid.UUID, ctx: Reader, locale: Locale = documents.DEFAULT_LOCALE
) -> Response:
    body = documents.render_credit_note(
        ctx.db, tenant_id=ctx.principal.tenant_id, credit_note_id=credit_note_id, html=False, locale=locale
    )
    return Response(body, media_type="application/pdf")


@router.get(
    "/credit_notes/{credit_note_id}",
    response_model=s.CreditNoteOut,
    tags=["credit notes"],
    summary="One credit note",
)
def get_credit_note(credit_note_id: uuid.UUID, ctx: Reader) -> s.CreditNoteOut:
    return s.CreditNoteOut.of(
        corrections.get_credit_note(ctx.db, tenant_id=ctx.principal.tenant_id, credit_note_id=credit_note_id)
    )


@router.post(
    "/invoices/{invoice_id}/payments",
    status_code=201,
    response_model=s.PaymentOut,
    tags=["payments"],
    summary="Record a payment",
)
def record_payment(invoice_id: uuid.UUID, body: s.PaymentCreate, ctx: Writer) -> Response:
    return _correction(ctx, invoice_id, body, corrections.record_payment, s.PaymentOut)


@router.get(
    "/invoices/{invoice_id}/payments",
    response_model=list[s.PaymentOut],
    tags=["payments"],
    summary="Payments of an invoice",
)
def invoice_payments(invoice_id: uuid.UUID, ctx: Reader) -> list[s.PaymentOut]:
    invoices.get_invoice(ctx.db, tenant_id=ctx.principal.tenant_id, invoice_id=invoice_id)
    return [
        s.PaymentOut.of(p)
        for p in corrections.payments_of(ctx.db, tenant_id=ctx.principal.tenant_id, invoice_ids=[invoice_id])
    ]


@router.get(
    "/customers/{customer_id}/balance",
    response_model=s.BalanceOut,
    tags=["customers"],
    summary="A customer's credit balance",
)
def customer_balance(customer_id: uuid.UUID, ctx: Reader) -> s.BalanceOut:
    customers.get_customer(ctx.db, tenant_id=ctx.principal.tenant_id, customer_id=customer_id)
    found = corrections.customer_balances(ctx.db, tenant_id=ctx.principal.tenant_id, customer_id=customer_id)
    return s.BalanceOut(
        customer=customer_id, balances={code: format(amount, "f") for code, amount in found.items()}
    )
