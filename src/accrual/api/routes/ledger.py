"""The ledger: the trial balance and receivable aging as of any instant, an invoice's entries,
and closing and reopening accounting months."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from accrual.api.deps import ReadContext, WriteContext, reader, writer
from accrual.api.schemas import Request
from accrual.domain.access import Scope
from accrual.domain.clock import NaiveDatetime, require_aware
from accrual.domain.errors import InvalidInput
from accrual.services import ledger
from accrual.services.billing import invoices

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])

Reader = Annotated[ReadContext, Depends(reader(Scope.READ))]


class TrialBalanceOut(BaseModel):
    object: Literal["trial_balance"] = "trial_balance"
    as_of: dt.datetime | None = Field(
        description="Entries effective at or before this instant; all when absent."
    )
    balanced: bool = Field(description="Debits equal credits in every currency.")
    currencies: dict[str, dict[str, str]] = Field(
        description="Per currency, every account's balance on its normal side (assets and contra "
        "revenue as debits; liabilities and revenue as credits), at the currency's minor unit."
    )


class EntryLineOut(BaseModel):
    account: str
    currency: str
    amount: str = Field(description="Debit positive, credit negative.")
    invoice_line: int | None


class EntryOut(BaseModel):
    object: Literal["ledger_entry"] = "ledger_entry"
    id: uuid.UUID
    kind: str
    source: uuid.UUID = Field(
        description="The invoice, payment or credit note posted; a fact is posted once per kind and source."
    )
    effective_at: dt.datetime
    lines: list[EntryLineOut]


@router.get("/trial_balance", response_model=TrialBalanceOut, summary="The trial balance as of an instant")
def trial_balance(ctx: Reader, as_of: dt.datetime | None = None) -> TrialBalanceOut:
    if as_of is not None:
        as_of = _aware(as_of, "as_of")
    found = ledger.trial_balance(ctx.db, tenant_id=ctx.principal.tenant_id, as_of=as_of)
    return TrialBalanceOut(
        as_of=as_of,
        balanced=ledger.is_balanced(found),
        currencies={
            code: {account: format(amount, "f") for account, amount in accounts.items()}
            for code, accounts in found.items()
        },
    )


class AgingRowOut(BaseModel):
    customer: str = Field(description="The customer's external id.")
    currency: str
    buckets: dict[str, str] = Field(
        description="Receivable by whole days past due: current (not yet due), 1_30, 31_60, 61_90, over_90."
    )
    total: str


class AgingOut(BaseModel):
    object: Literal["ar_aging"] = "ar_aging"
    as_of: dt.datetime
    customers: list[AgingRowOut]
    totals: dict[str, dict[str, str]] = Field(
        description="Per currency, each bucket and `total`: the trial balance's receivable at as_of."
    )


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    try:
        return require_aware(value, name=name)
    except NaiveDatetime as error:
        raise InvalidInput(str(error), field=name) from error


@router.get(
    "/ar_aging",
    response_model=AgingOut,
    summary="Accounts receivable by days past due, as of an instant (JSON, or CSV with format=csv)",
    responses={200: {"content": {"text/csv": {}}}},
)
def ar_aging(
    ctx: Reader,
    as_of: dt.datetime | None = None,
    as_format: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    instant = _aware(as_of, "as_of") if as_of is not None else ctx.now
    aging = ledger.ar_aging(ctx.db, tenant_id=ctx.principal.tenant_id, as_of=instant)
    if as_format == "csv":
        return Response(
            ledger.aging_csv(aging),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="ar_aging.csv"'},
        )
    return Response(
        AgingOut.model_validate(aging.snapshot()).model_dump_json(), media_type="application/json"
    )


@router.get(
    "/invoices/{invoice_id}/entries",
    response_model=list[EntryOut],
    summary="The ledger entries of an invoice (finalized, paid, credited, voided, written off)",
)
def invoice_entries(invoice_id: uuid.UUID, ctx: Reader) -> list[EntryOut]:
    invoices.get_invoice(ctx.db, tenant_id=ctx.principal.tenant_id, invoice_id=invoice_id)
    return [
        EntryOut(
            id=entry.entry_id,
            kind=entry.kind,
            source=entry.source_id,
            effective_at=entry.effective_at,
            lines=[
                EntryLineOut(account=a, currency=c, amount=format(amount, "f"), invoice_line=line)
                for a, c, amount, line in entry.lines
            ],
        )
        for entry in ledger.invoice_entries(ctx.db, tenant_id=ctx.principal.tenant_id, invoice_id=invoice_id)
    ]


class PeriodOut(BaseModel):
    object: Literal["accounting_period"] = "accounting_period"
    month: str = Field(description="YYYY-MM, in the tenant's time zone.")
    status: Literal["closed", "open"]
    changed_at: dt.datetime
    changed_by: str
    reason: str | None = Field(description="Why it was reopened.")

    @classmethod
    def of(cls, view: ledger.PeriodView) -> PeriodOut:
        return cls(
            month=view.month,
            status=view.status,
            changed_at=view.changed_at,
            changed_by=view.changed_by,
            reason=view.reason,
        )


class PeriodReopen(Request):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"reason": "late bank file"}]},
    )

    reason: str = Field(description="Why the month is reopened (1 to 500 characters); audited.")


Admin = Annotated[WriteContext, Depends(writer(Scope.ADMIN))]


@router.get("/periods", response_model=list[PeriodOut], summary="Every month ever closed, with its state now")
def list_periods(ctx: Reader) -> list[PeriodOut]:
    return [PeriodOut.of(p) for p in ledger.periods(ctx.db, tenant_id=ctx.principal.tenant_id)]


@router.post(
    "/periods/{month}/close",
    response_model=PeriodOut,
    summary="Close an ended month (YYYY-MM): no ledger entry may be effective in it afterwards",
)
def close_period(month: str, ctx: Admin) -> Response:
    return ctx.run(
        lambda db: PeriodOut.of(
            ledger.close_period(
                db, tenant_id=ctx.principal.tenant_id, month=month, actor=ctx.principal.actor, now=ctx.now
            )
        )
    )


@router.post("/periods/{month}/reopen", response_model=PeriodOut, summary="Reopen a closed month, saying why")
def reopen_period(month: str, body: PeriodReopen, ctx: Admin) -> Response:
    return ctx.run(
        lambda db: PeriodOut.of(
            ledger.reopen_period(
                db,
                tenant_id=ctx.principal.tenant_id,
                month=month,
                reason=body.reason,
                actor=ctx.principal.actor,
                now=ctx.now,
            )
        )
    )
