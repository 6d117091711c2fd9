"""Invoice and credit-note documents: HTML (Jinja2) and PDF (fpdf2), amounts formatted by babel.

Both renderings come from one `Document`: who issues it and to whom, its number and dates,
its lines with their service periods and how each was computed, the tax breakdown and the
totals. PDFs use the built-in PDF fonts, so no system font or package is needed; amounts in
them carry the ISO currency code ("1,234.50 EUR"), which those fonts can always draw.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import babel.dates
import babel.numbers
import jinja2
from fpdf import FPDF

from accrual.domain import money
from accrual.services.billing import corrections, invoices
from accrual.services.billing.views import CreditNoteView, InvoiceView
from accrual.services.unit_of_work import read_only
from accrual.store import invoices as invoice_store
from accrual.store.database import TransactionSource

DEFAULT_LOCALE = "en_US"
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("accrual.services.billing", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)


@dataclasses.dataclass(frozen=True)
class DocumentLine:
    description: str
    how: tuple[str, ...]
    period: str
    quantity: str
    unit_amount: str
    amount: str
    discount: str
    tax: str


@dataclasses.dataclass(frozen=True)
class TaxRow:
    label: str
    base: str
    tax: str


@dataclasses.dataclass(frozen=True)
class Document:
    title: str
    number: str
    status: str
    lang: str
    dates: tuple[tuple[str, str], ...]
    seller: tuple[str, ...]
    buyer: tuple[str, ...]
    lines: tuple[DocumentLine, ...]
    tax_breakdown: tuple[TaxRow, ...]
    totals: tuple[tuple[str, str, bool], ...]
    note: str


class _Format:
    def __init__(self, currency: money.Currency, locale: str, *, codes: bool) -> None:
        self.currency = currency
        self.locale = locale
        self.codes = codes

    def money(self, amount: Decimal) -> str:
        if self.codes:
            places = self.currency.exponent
            number = babel.numbers.format_decimal(
                amount, format="#,##0" + ("." + "0" * places if places else ""), locale=self.locale
            )
            return f"{number} {self.currency.code}"
        return babel.numbers.format_currency(
            amount, self.currency.code, locale=self.locale, currency_digits=True
        )

    def price(self, amount: Decimal | None) -> str:
        if amount is None:
            return ""
        places = max(self.currency.exponent, -int(amount.normalize().as_tuple().exponent))
        number = babel.numbers.format_decimal(
            amount, format="#,##0" + ("." + "0" * places if places else ""), locale=self.locale
        )
        if self.codes:
            return f"{number} {self.currency.code}"
        symbol = babel.numbers.get_currency_symbol(self.currency.code, locale=self.locale)
        return f"{symbol}{number}"

    def quantity(self, value: Decimal) -> str:
        return babel.numbers.format_decimal(
            Decimal(money.format_quantity(value)), locale=self.locale, decimal_quantization=False
        )

    def date(self, at: dt.datetime | None) -> str:
        if at is None:
            return ""
        return babel.dates.format_date(at.astimezone(dt.UTC).date(), format="medium", locale=self.locale)


def _party(raw: Mapping[str, Any]) -> tuple[str, ...]:
    lines = [str(raw.get("name") or "")]
    address = raw.get("address") or {}
    if isinstance(address, Mapping):
        lines += [str(address[k]) for k in ("line1", "line2") if address.get(k)]
        city = " ".join(str(address[k]) for k in ("postal_code", "city") if address.get(k))
        if city:
            lines.append(city)
        lines += [str(address[k]) for k in ("state", "country") if address.get(k)]
    elif address:
        lines.append(str(address))
    if raw.get("tax_id"):
        lines.append(f"Tax id {raw['tax_id']}")
    if raw.get("email"):
        lines.append(str(raw["email"]))
    return tuple(line for line in lines if line)


def _period(view_period: Any, f: _Format) -> str:
    if view_period is None:
        return ""
    # Half-open [start, end): the last day of service is the day before the end.
    last = view_period.end - dt.timedelta(microseconds=1)
    return f"{f.date(view_period.start)} – {f.date(last)}"


def invoice_document(view: InvoiceView, *, locale: str = DEFAULT_LOCALE, codes: bool = False) -> Document:
    """What an invoice shows, formatted for `locale`."""
    f = _Format(view.currency, locale, codes=codes)
    lines = []
    taxes: dict[tuple[str, str, bool], list[Decimal]] = {}
    for line in view.lines:
        how = tuple(
            f"{part['description']}: {f.money(Decimal(part['amount']))}"
            for part in line.details.get("parts", [])
            if len(line.details.get("parts", [])) > 1
        )
        lines.append(
            DocumentLine(
                description=line.description,
                how=how,
                period=_period(line.period, f),
                quantity=f.quantity(line.quantity),
                unit_amount=f.price(line.unit_amount),
                amount=f.money(line.amount),
                discount=f.money(line.discount) if line.discount else "",
                tax=f.money(line.tax) if line.taxes else "",
            )
        )
        for tax in line.taxes:
            key = (str(tax["name"]), str(tax["rate"]), bool(tax["inclusive"]))
            base, amount = taxes.get(key, [Decimal(0), Decimal(0)])
            taxed = line.amount - line.discount
            if tax["inclusive"]:
                taxed -= Decimal(tax["amount"])
            taxes[key] = [base + taxed, amount + Decimal(tax["amount"])]
    breakdown = tuple(
        TaxRow(
            label=f"{name} {rate}%" + (" (included)" if inclusive else ""),
            base=f.money(base),
            tax=f.money(amount),
        )
        for (name, rate, inclusive), (base, amount) in taxes.items()
    )
    totals: list[tuple[str, str, bool]] = [("Subtotal", f.money(view.subtotal), False)]
    if view.discount:
        totals.append(("Discount", "-" + f.money(view.discount), False))
    if view.tax:
        totals.append(("Tax", f.money(view.tax), False))
    totals.append(("Total", f.money(view.total), True))
    if view.credit_applied:
        totals.append(("Credit balance applied", "-" + f.money(view.credit_applied), False))
    totals.append(("Amount due", f.money(view.amount_due), True))
    if view.amount_paid:
        totals.append(("Paid", "-" + f.money(view.amount_paid), False))
    if view.amount_credited:
        totals.append(("Credited", "-" + f.money(view.amount_credited), False))
    totals.append(("Amount remaining", f.money(view.amount_remaining), True))
    dates = [("Issued", f.date(view.issued_at))]
    if view.due_at:
        dates.append(("Due", f.date(view.due_at)))
    if view.period:
        dates.append(("Period", _period(view.period, f)))
    return Document(
        title="Invoice",
        number=view.number or "DRAFT",
        status=view.status.value,
        lang=locale.split("_", maxsplit=1)[0],
        dates=tuple(dates),
        seller=_party(view.seller) or ("",),
        buyer=_party(view.buyer) or (view.customer,),
        lines=tuple(lines),
        tax_breakdown=breakdown,
        totals=tuple(totals),
        note=view.memo or "",
    )


def credit_note_document(
    note: CreditNoteView, invoice: InvoiceView, *, locale: str = DEFAULT_LOCALE, codes: bool = False
) -> Document:
    """What a credit note shows: the invoice lines it credits and where the credit went."""
    f = _Format(note.currency, locale, codes=codes)
    by_no = {line.line_no: line for line in invoice.lines}
    lines = tuple(
        DocumentLine(
            description=by_no[int(item["line_no"])].description,
            how=(),
            period=_period(by_no[int(item["line_no"])].period, f),
            quantity="",
            unit_amount="",
            amount=f.money(Decimal(item["amount"])),
            discount="",
            tax=f.money(Decimal(item["tax"])),
        )
        for item in note.lines
    )
    totals = (
        ("Credited", f.money(note.amount), True),
        ("of which tax", f.money(note.tax), False),
        ("Off the invoice", f.money(note.to_invoice), False),
        ("To the customer's credit balance", f.money(note.to_balance), False),
    )
    return Document(
        title="Credit note",
        number=note.number,
        status=f"credits invoice {note.invoice}",
        lang=locale.split("_", maxsplit=1)[0],
        dates=(("Issued", f.date(note.created_at)),),
        seller=_party(invoice.seller) or ("",),
        buyer=_party(invoice.buyer) or (invoice.customer,),
        lines=lines,
        tax_breakdown=(),
        totals=totals,
        note=f"Reason: {note.reason}",
    )


def to_html(document: Document) -> str:
    return _TEMPLATES.get_template("document.html.j2").render(doc=document)


def _latin1(text: str) -> str:
    # The built-in PDF fonts cover Latin-1; anything else is shown by its nearest plain form.
    replaced = text.replace("–", "-").replace("—", "-").replace("\u202f", " ").replace("\xa0", " ")
    return replaced.encode("latin-1", "replace").decode("latin-1")


def to_pdf(document: Document) -> bytes:
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(0, 9, _latin1(f"{document.title} {document.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 9)
    pdf.cell(0, 5, _latin1(document.status.upper()), new_x="LMARGIN", new_y="NEXT")
    for label, value in document.dates:
        pdf.cell(0, 5, _latin1(f"{label}: {value}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    top = pdf.get_y()
    for x, title, party in ((10, "From", document.seller), (110, "Bill to", document.buyer)):
        pdf.set_xy(x, top)
        pdf.set_font("helvetica", "B", 9)
        pdf.cell(90, 5, title, new_x="LEFT", new_y="NEXT")
        pdf.set_font("helvetica", "", 9)
        for party_line in party:
            pdf.cell(90, 5, _latin1(party_line), new_x="LEFT", new_y="NEXT")
    pdf.set_xy(10, max(pdf.get_y(), top + 5 * (1 + max(len(document.seller), len(document.buyer)))) + 4)
    widths = (70, 36, 16, 20, 20, 14, 14)
    headers = ("Description", "Period", "Qty", "Unit", "Amount", "Disc.", "Tax")
    pdf.set_font("helvetica", "B", 8)
    for width, header in zip(widths, headers, strict=True):
        pdf.cell(width, 6, header, border="B", align="L" if header in ("Description", "Period") else "R")
    pdf.ln()
    pdf.set_font("helvetica", "", 8)
    for line in document.lines:
        cells = (line.period, line.quantity, line.unit_amount, line.amount, line.discount, line.tax)
        top_of_row = pdf.get_y()
        description = _latin1(line.description + "".join(f"\n  {how}" for how in line.how))
        wrapped = pdf.multi_cell(widths[0], 4.5, description, dry_run=True, output="LINES")
        rows = len(wrapped) if isinstance(wrapped, list) else 1
        pdf.multi_cell(widths[0], 4.5, description, new_x="RIGHT", new_y="TOP")
        for width, text in zip(widths[1:], cells, strict=True):
            pdf.multi_cell(
                width,
                4.5,
                _latin1(text),
                align="L" if width == widths[1] else "R",
                new_x="RIGHT",
                new_y="TOP",
            )
        # Each cell went back to the row's top; the row ends below its description.
        pdf.set_xy(10, top_of_row + 4.5 * max(rows, 1) + 1)
    if document.tax_breakdown:
        pdf.ln(2)
        pdf.set_font("helvetica", "B", 8)
        pdf.cell(0, 5, "Tax", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", "", 8)
        for row in document.tax_breakdown:
            pdf.cell(60, 5, _latin1(row.label))
            pdf.cell(35, 5, _latin1(f"on {row.base}"), align="R")
            pdf.cell(35, 5, _latin1(row.tax), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for label, value, grand in document.totals:
        pdf.set_font("helvetica", "B" if grand else "", 9)
        pdf.set_x(100)
        pdf.cell(60, 5.5, _latin1(label))
        pdf.cell(40, 5.5, _latin1(value), align="R", new_x="LMARGIN", new_y="NEXT")
    if document.note:
        pdf.ln(4)
        pdf.set_font("helvetica", "I", 8)
        pdf.multi_cell(0, 4.5, _latin1(document.note))
    return bytes(pdf.output())


def render_invoice(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    invoice_id: uuid.UUID,
    html: bool,
    locale: str = DEFAULT_LOCALE,
) -> bytes:
    """An invoice as a PDF (or HTML) document."""
    view = invoices.get_invoice(db, tenant_id=tenant_id, invoice_id=invoice_id)
    if html:
        return to_html(invoice_document(view, locale=locale)).encode()
    return to_pdf(invoice_document(view, locale=locale, codes=True))


def render_credit_note(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    credit_note_id: uuid.UUID,
    html: bool,
    locale: str = DEFAULT_LOCALE,
) -> bytes:
    note = corrections.get_credit_note(db, tenant_id=tenant_id, credit_note_id=credit_note_id)
    invoice = invoices.get_invoice(db, tenant_id=tenant_id, invoice_id=note.invoice_id)
    if html:
        return to_html(credit_note_document(note, invoice, locale=locale)).encode()
    return to_pdf(credit_note_document(note, invoice, locale=locale, codes=True))


def write_all(
    db: TransactionSource, *, tenant_id: uuid.UUID, folder: Path, locale: str = DEFAULT_LOCALE
) -> list[Path]:
    """Write every invoice (named by its number, drafts by id) and credit note of the tenant as
    PDF and HTML into `folder`; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with read_only(db) as conn:
        rows = conn.execute(invoice_store.select_invoices(tenant_id=tenant_id)).all()
        notes = conn.execute(invoice_store.select_credit_notes(tenant_id=tenant_id)).all()
    for view in sorted(invoices.views_of_rows(db, rows), key=lambda v: (v.number is None, v.number or "")):
        name = view.number or f"draft-{view.invoice_id}"
        for html, suffix in ((False, ".pdf"), (True, ".html")):
            path = folder / f"{name}{suffix}"
            path.write_bytes(
                render_invoice(db, tenant_id=tenant_id, invoice_id=view.invoice_id, html=html, locale=locale)
            )
            written.append(path)
    for note in notes:
        for html, suffix in ((False, ".pdf"), (True, ".html")):
            path = folder / f"{note.number}{suffix}"
            path.write_bytes(
                render_credit_note(
                    db, tenant_id=tenant_id, credit_note_id=note.credit_note_id, html=html, locale=locale
                )
            )
            written.append(path)
    return written
