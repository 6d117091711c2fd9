"""Bodies of the invoices, credit notes and payments API. Amounts are decimal strings with
exactly the currency's decimals ("12.30", JPY "1200"); instants RFC 3339 in UTC."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from accrual.api.schemas import Request
from accrual.services.billing.views import CreditNoteView, InvoiceView, PaymentView

Amount = str


class Period(BaseModel):
    start: str
    end: str


class LineTax(BaseModel):
    code: str
    name: str
    rate: str
    inclusive: bool
    amount: Amount


class InvoiceLineOut(BaseModel):
    line_no: int
    kind: Literal["fee", "proration", "usage", "minimum", "late_usage", "one_off"]
    charge: str | None
    description: str
    period: Period | None
    quantity: str
    unit_amount: str | None = None
    amount: Amount
    discount: Amount
    tax: Amount
    taxes: list[LineTax]


class InvoiceOut(BaseModel):
    object: Literal["invoice"] = "invoice"
    id: uuid.UUID
    number: str | None = Field(description="Gap-free per tenant, given at finalization; null for a draft.")
    customer: str
    subscription: str | None
    status: Literal["draft", "open", "paid", "void", "uncollectible"]
    reason: str = Field(description="What made it: start, boundary, trial_end, change, cancel, end, ...")
    currency: str
    issued_at: str
    period: Period | None
    lines: list[InvoiceLineOut]
    subtotal: Amount
    discount: Amount
    tax: Amount
    total: Amount = Field(description="subtotal − discount + exclusive tax")
    credit_applied: Amount = Field(description="Customer credit balance used when it finalized.")
    amount_due: Amount = Field(description="total − credit_applied")
    amount_paid: Amount
    amount_credited: Amount
    amount_remaining: Amount = Field(description="amount_due − paid − credited")
    created_at: str
    finalize_at: str | None = Field(description="When a draft finalizes on its own (its grace period's end).")
    finalized_at: str | None
    due_at: str | None
    paid_at: str | None
    voided_at: str | None
    uncollectible_at: str | None
    memo: str | None

    @classmethod
    def of(cls, view: InvoiceView) -> InvoiceOut:
        return cls.model_validate(view.snapshot())


class CreditNoteOut(BaseModel):
    object: Literal["credit_note"] = "credit_note"
    id: uuid.UUID
    number: str
    invoice: str
    customer: str
    currency: str
    amount: Amount = Field(description="Credited, tax included.")
    tax: Amount
    to_invoice: Amount = Field(description="Taken off the invoice's amount remaining.")
    to_balance: Amount = Field(description="Added to the customer's credit balance.")
    reason: str
    lines: list[dict[str, Any]]
    created_at: str

    @classmethod
    def of(cls, view: CreditNoteView) -> CreditNoteOut:
        return cls.model_validate(view.snapshot())


class PaymentOut(BaseModel):
    object: Literal["payment"] = "payment"
    id: uuid.UUID
    customer: str
    invoice: str | None
    currency: str
    amount: Amount
    method: str
    outcome: Literal["succeeded", "failed"]
    reference: str | None
    failure_reason: str | None
    to_invoice: Amount
    to_balance: Amount = Field(description="An overpayment, kept as the customer's credit.")
    received_at: str

    @classmethod
    def of(cls, view: PaymentView) -> PaymentOut:
        return cls.model_validate(view.snapshot())


class BalanceOut(BaseModel):
    object: Literal["customer_balance"] = "customer_balance"
    customer: uuid.UUID
    balances: dict[str, Amount] = Field(description="Credit in the customer's favour, per currency.")


class LineCreate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"description": "Onboarding", "amount": "250.00"}]}
    )
    description: str
    amount: str = Field(description="The line's amount (negative for a credit).")
    quantity: str | None = None


class CreditedLine(Request):
    line_no: int
    amount: str


class CreditNoteCreate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amount": "10.00", "reason": "service outage"}]}
    )
    amount: str | None = Field(default=None, description="Tax included; spread over the lines.")
    lines: list[CreditedLine] | None = Field(default=None, description="Or exact amounts per line.")
    reason: str


class PaymentCreate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amount": "66.00", "method": "bank_transfer"}]}
    )
    amount: str | None = Field(default=None, description="Default: what remains.")
    method: Literal["manual", "bank_transfer", "card", "check", "cash", "other"] | None = None
    outcome: Literal["succeeded", "failed"] | None = None
    reference: str | None = None
    failure_reason: str | None = None
