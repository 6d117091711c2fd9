"""`accrual simulate`, `accrual bill` and `accrual invoices ...`."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from accrual.cli import documents
from accrual.cli.common import (
    EXIT_FAILED,
    JsonFlag,
    TenantOption,
    all_pages,
    cli_actor,
    command_database,
    err,
    errors_as_messages,
    fail,
    out,
    parse_instant,
    parse_uuid,
    print_json,
    table,
)
from accrual.cli.settings import Settings
from accrual.domain.errors import AccrualError
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.services import simulation, test_clocks
from accrual.services.billing import corrections, due, invoices
from accrual.services.billing import documents as invoice_documents
from accrual.services.billing.views import InvoiceView
from accrual.services.registry import default_registry
from accrual.store import migrate
from accrual.store.database import Database
from accrual.store.embedded import EmbeddedPostgres, create_database

invoices_app = typer.Typer(
    help="Invoices: drafts, finalized documents, credit notes, payments.", no_args_is_help=True
)


# --- simulate --------------------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_database(settings: Settings) -> Iterator[Database]:
    """A new, migrated database on the configured (or embedded) server, dropped afterwards."""
    embedded: EmbeddedPostgres | None = None
    url = settings.database_url
    if url is None:
        embedded = EmbeddedPostgres(settings.data_dir / "pgdata")
        url = embedded.start()
    name = f"accrual_simulate_{os.getpid()}_{secrets.token_hex(6)}"
    db_url = create_database(url, name)
    db = Database(db_url, pool_size=4)
    try:
        migrate.upgrade(db)
        yield db
    finally:
        db.dispose()
        admin = sa.create_engine(
            sa.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1)),
            isolation_level="AUTOCOMMIT",
        )
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()
            if embedded is not None:
                embedded.stop()


def _print_report(report: dict[str, Any]) -> None:
    for invoice in report["invoices"]:
        title = (
            f"{invoice['number'] or 'draft'} · {invoice['customer']} · {invoice['subscription'] or ''} · "
            f"{invoice['status']} · issued {invoice['issued_at']}"
        )
        rows = [
            [
                line["kind"],
                line["charge"] or "",
                line["description"],
                (line["period"] or {}).get("start", "") or "",
                (line["period"] or {}).get("end", "") or "",
                line["quantity"],
                line["amount"],
                line["discount"],
                line["tax"],
            ]
            for line in invoice["lines"]
        ]
        rows.append(
            [
                "",
                "",
                "subtotal / discount / tax",
                "",
                "",
                "",
                invoice["subtotal"],
                invoice["discount"],
                invoice["tax"],
            ]
        )
        rows.append(["", "", f"total {invoice['currency']}", "", "", "", invoice["total"], "", ""])
        rows.append(
            [
                "",
                "",
                "amount due / remaining",
                "",
                "",
                "",
                invoice["amount_due"],
                invoice["amount_remaining"],
                "",
            ]
        )
        table(
            title, ["kind", "charge", "description", "from", "to", "qty", "amount", "discount", "tax"], rows
        )
    events = report["events"]
    out.print(
        f"events: {events['accepted']} accepted, {events['duplicates']} duplicates, "
        f"{len(events['rejected'])} rejected",
        highlight=False,
    )
    for rejected in events["rejected"]:
        out.print(f"  rejected {rejected['id']}: {rejected['error']}", highlight=False)
    if report["credit_notes"]:
        table(
            "credit notes",
            ["number", "invoice", "amount", "to invoice", "to balance", "reason"],
            [
                [n["number"], n["invoice"], n["amount"], n["to_invoice"], n["to_balance"], n["reason"]]
                for n in report["credit_notes"]
            ],
        )
    table(
        "subscriptions",
        ["id", "customer", "plan", "status", "period start", "period end"],
        [
            [
                s["id"],
                s["customer"],
                s["plan"],
                s["status"],
                (s["current_period"] or {}).get("start") or "",
                (s["current_period"] or {}).get("end") or "",
            ]
            for s in report["subscriptions"]
        ],
    )
    if "ledger" in report:
        out.print(
            f"ledger: {'balanced' if report['ledger']['balanced'] else 'NOT BALANCED'}", highlight=False
        )


def simulate(
    file: Annotated[Path, typer.Argument(help="A scenario file (see docs/scenarios.md).")],
    as_json: JsonFlag = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when the report does not match `expect`.")
    ] = False,
    documents_dir: Annotated[
        Path | None,
        typer.Option(
            "--documents", help="Write each invoice and credit note as PDF and HTML into this folder."
        ),
    ] = None,
) -> None:
    """Run a scenario file on a fresh tenant and test clock, in a throw-away database."""
    try:
        document = documents.load(file)
        scenario = simulation.parse_scenario(document.data)
    except documents.DocumentError as exc:
        fail(str(exc))
    except AccrualError as exc:
        fail(f"{document.where(exc.field)}: {exc.detail}")
    with errors_as_messages(), throwaway_database(Settings()) as db:
        try:
            outcome = simulation.run_scenario(db, scenario, registry=default_registry(), actor=cli_actor())
        except AccrualError as exc:
            fail(f"{document.where(exc.field)}: {exc.detail}")
        report = outcome.report
        if documents_dir is not None:
            written = invoice_documents.write_all(db, tenant_id=outcome.tenant_id, folder=documents_dir)
            err.print(f"wrote {len(written)} documents to {documents_dir}", highlight=False)
    if as_json:
        print_json(report)
    else:
        _print_report(report)
    if check:
        differences = simulation.check(scenario, report)
        if scenario.expect is None:
            err.print(f"{file}: has no expect to check", highlight=False)
            raise typer.Exit(EXIT_FAILED)
        for difference in differences:
            err.print(
                f"{document.where('/expect' + difference.path.split(' ')[0])}: {difference}",
                highlight=False,
                soft_wrap=True,
            )
        if differences:
            err.print(f"[bold red]{len(differences)} difference(s) from expect[/]")
            raise typer.Exit(EXIT_FAILED)
        err.print("[green]matches expect[/]")


def bill(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Run what is due up to this instant (default: now).")
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="First put billing points set aside by errors back in the run."),
    ] = False,
) -> None:
    """Run the billing run: every renewal, billing point and draft due on the real clock."""
    now = SYSTEM_CLOCK.now()
    until = parse_instant(as_of, option="--as-of") if as_of else now
    if until > now:
        # Billing ahead of time would close periods still running: their usage would turn late.
        fail(f"--as-of: {until.isoformat()} is in the future; billing runs up to now at the latest")
    with command_database() as db:
        if retry_failed:
            out.print(f"{due.retry_failures(db)} billing point(s) put back in the run", highlight=False)
        steps = test_clocks.run_real_clock_due_work(db, registry=default_registry(), now=until)
        failed = due.list_failures(db)
    done: dict[str, int] = {}
    for step in steps:
        done[step.provider] = done.get(step.provider, 0) + step.items
    out.print(
        f"due work up to {until.isoformat()}: "
        + (", ".join(f"{items} {provider}" for provider, items in done.items()) or "nothing was due"),
        highlight=False,
    )
    for failure in failed:
        err.print(
            f"set aside: billing point {failure.billing_point_id} of subscription {failure.subscription_id} "
            f"(tenant {failure.tenant_id}) at {failure.at.isoformat()}: {failure.error}",
            highlight=False,
            soft_wrap=True,
        )
    if failed:
        raise typer.Exit(EXIT_FAILED)


# --- invoices --------------------------------------------------------------------------------


def _invoice_row(view: InvoiceView) -> list[str]:
    s = view.snapshot()
    return [
        s["id"],
        s["number"] or "draft",
        s["customer"],
        s["status"],
        s["issued_at"],
        s["total"],
        s["amount_remaining"],
        s["currency"],
    ]


def _find(db: Database, tenant_id: Any, reference: str) -> InvoiceView:
    return invoices.find_invoice(db, tenant_id=tenant_id, reference=reference)


@invoices_app.command("list")
def invoices_list(
    tenant: TenantOption,
    status: Annotated[str | None, typer.Option(help="draft, open, paid, void or uncollectible.")] = None,
    customer: Annotated[str | None, typer.Option(help="Customer id.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Invoices of a tenant, oldest first."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        items = all_pages(
            lambda cursor: invoices.list_invoices(
                db,
                tenant_id=tenant_id,
                customer_id=parse_uuid(customer, what="--customer") if customer else None,
                status=status,
                cursor=cursor,
                limit=100,
            )
        )
    if as_json:
        print_json([v.snapshot() for v in items])
        return
    table(
        "invoices",
        ["id", "number", "customer", "status", "issued", "total", "remaining", "currency"],
        [_invoice_row(v) for v in items],
    )


@invoices_app.command("show")
def invoices_show(
    tenant: TenantOption,
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    as_json: JsonFlag = False,
) -> None:
    """One invoice with its lines."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        view = _find(db, tenant_id, invoice)
    if as_json:
        print_json(view.snapshot())
        return
    _print_report(
        {
            "invoices": [view.snapshot()],
            "events": {"accepted": 0, "duplicates": 0, "rejected": []},
            "credit_notes": [],
            "subscriptions": [],
        }
    )


def _act(tenant: str, invoice: str, operation: Any, as_json: bool, **extra: Any) -> None:
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        found = _find(db, tenant_id, invoice)
        result = operation(
            db,
            tenant_id=tenant_id,
            invoice_id=found.invoice_id,
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
            **extra,
        )
    if as_json:
        print_json(result.snapshot())
    else:
        out.print(f"invoice {result.number or 'draft'} is {result.status.value}", highlight=False)


def _invoice_command(name: str, operation: invoices.InvoiceOperation, summary: str) -> None:
    def command(
        tenant: TenantOption,
        invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
        as_json: JsonFlag = False,
    ) -> None:
        _act(tenant, invoice, operation, as_json)

    command.__doc__ = summary
    invoices_app.command(name)(command)


_invoice_command("finalize", invoices.finalize_draft, "Finalize a draft now: number it and freeze it.")
_invoice_command("void", invoices.void_invoice, "Void an open or uncollectible invoice.")
_invoice_command("uncollectible", invoices.mark_uncollectible, "Mark an open invoice uncollectible.")
_invoice_command("refresh", invoices.refresh_draft, "Rate a draft's usage again.")


@invoices_app.command("add-line")
def invoices_add_line(
    tenant: TenantOption,
    invoice: Annotated[str, typer.Argument()],
    description: Annotated[str, typer.Option()],
    amount: Annotated[str, typer.Option(help="The line's amount, e.g. 25.00 (negative for a credit).")],
    as_json: JsonFlag = False,
) -> None:
    """Add a one-off line to a draft."""
    _act(tenant, invoice, invoices.add_line, as_json, spec={"description": description, "amount": amount})


@invoices_app.command("delete")
def invoices_delete(tenant: TenantOption, invoice: Annotated[str, typer.Argument()]) -> None:
    """Delete a draft."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        found = _find(db, tenant_id, invoice)
        invoices.delete_draft(
            db, tenant_id=tenant_id, invoice_id=found.invoice_id, actor=cli_actor(), now=SYSTEM_CLOCK.now()
        )
    out.print("draft deleted")


@invoices_app.command("credit")
def invoices_credit(
    tenant: TenantOption,
    invoice: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option()],
    amount: Annotated[str, typer.Option(help="Amount to credit, tax included.")],
    as_json: JsonFlag = False,
) -> None:
    """Issue a credit note against a finalized invoice."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        note = corrections.create_credit_note(
            db,
            tenant_id=tenant_id,
            invoice=invoice,
            spec={"amount": amount, "reason": reason},
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
        )
    if as_json:
        print_json(note.snapshot())
    else:
        out.print(
            f"credit note {note.number}: {note.amount} {note.currency.code} on {note.invoice}",
            highlight=False,
        )


@invoices_app.command("pay")
def invoices_pay(
    tenant: TenantOption,
    invoice: Annotated[str, typer.Argument()],
    amount: Annotated[str | None, typer.Option(help="Default: what remains.")] = None,
    method: Annotated[str, typer.Option()] = "manual",
    reference: Annotated[str | None, typer.Option()] = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a payment received for an invoice."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    spec = {"amount": amount, "method": method, "reference": reference}
    with command_database() as db:
        payment = corrections.record_payment(
            db,
            tenant_id=tenant_id,
            invoice=invoice,
            spec={k: v for k, v in spec.items() if v is not None},
            actor=cli_actor(),
            now=SYSTEM_CLOCK.now(),
        )
    if as_json:
        print_json(payment.snapshot())
    else:
        out.print(
            f"payment of {payment.amount} {payment.currency.code} on {payment.invoice}", highlight=False
        )


@invoices_app.command("pdf")
def invoices_pdf(
    tenant: TenantOption,
    invoice: Annotated[str, typer.Argument()],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the PDF.")],
    html: Annotated[bool, typer.Option("--html", help="Write HTML instead of PDF.")] = False,
) -> None:
    """Render an invoice as PDF (or HTML)."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        found = _find(db, tenant_id, invoice)
        rendered = invoice_documents.render_invoice(
            db, tenant_id=tenant_id, invoice_id=found.invoice_id, html=html
        )
    output.write_bytes(rendered)
    out.print(f"wrote {output} ({len(rendered)} bytes)", highlight=False)
