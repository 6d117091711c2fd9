"""`accrual ledger ...`: the trial balance, receivable aging, an invoice's entries, and
closing and reopening accounting months."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from accrual.cli.common import (
    JsonFlag,
    TenantOption,
    cli_actor,
    command_database,
    out,
    parse_instant,
    parse_uuid,
    print_json,
    table,
)
from accrual.domain.ledger import AGING_BUCKETS
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.services import ledger

ledger_app = typer.Typer(help="The double-entry ledger: trial balance, entries.", no_args_is_help=True)


@ledger_app.command("trial-balance")
def trial_balance(
    tenant: TenantOption,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Entries effective at or before this instant (RFC 3339).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every account's balance per currency, on its normal side, and whether debits equal credits."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    instant = parse_instant(as_of, option="--as-of") if as_of is not None else None
    with command_database() as db:
        found = ledger.trial_balance(db, tenant_id=tenant_id, as_of=instant)
    balanced = ledger.is_balanced(found)
    if as_json:
        print_json(
            {
                "as_of": instant.isoformat() if instant else None,
                "balanced": balanced,
                "currencies": {
                    code: {account: format(amount, "f") for account, amount in accounts.items()}
                    for code, accounts in found.items()
                },
            }
        )
        return
    for code, accounts in found.items():
        table(
            f"trial balance {code}" + (f" as of {instant.isoformat()}" if instant else ""),
            ["account", "balance"],
            [[account, format(amount, "f")] for account, amount in accounts.items()],
        )
    out.print("balanced" if balanced else "NOT BALANCED: debits differ from credits", highlight=False)


@ledger_app.command("ar-aging")
def ar_aging(
    tenant: TenantOption,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="As of this instant (RFC 3339); default: now.")
    ] = None,
    as_json: JsonFlag = False,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write the aging as CSV to this file.")
    ] = None,
) -> None:
    """Accounts receivable per customer by days past due: current, 1-30, 31-60, 61-90, over 90."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    instant = parse_instant(as_of, option="--as-of") if as_of is not None else SYSTEM_CLOCK.now()
    with command_database() as db:
        aging = ledger.ar_aging(db, tenant_id=tenant_id, as_of=instant)
    if csv_file is not None:
        csv_file.write_text(ledger.aging_csv(aging), encoding="utf-8")
        out.print(f"wrote {csv_file}", highlight=False)
        return
    if as_json:
        print_json(aging.snapshot() | {"as_of": instant.isoformat()})
        return
    table(
        f"receivable aging as of {instant.isoformat()}",
        ["currency", "customer", *AGING_BUCKETS, "total"],
        [
            [
                row.currency,
                row.customer,
                *(format(row.buckets[b], "f") for b in AGING_BUCKETS),
                format(row.total, "f"),
            ]
            for row in aging.customers
        ]
        + [
            [code, "(total)", *(format(v, "f") for v in totals.values())]
            for code, totals in aging.totals().items()
        ],
    )


@ledger_app.command("entries")
def entries(
    tenant: TenantOption,
    invoice: Annotated[str, typer.Argument(help="Invoice id.")],
    as_json: JsonFlag = False,
) -> None:
    """The ledger entries of an invoice, in the order they were posted."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    invoice_id = parse_uuid(invoice, what="INVOICE")
    with command_database() as db:
        found = ledger.invoice_entries(db, tenant_id=tenant_id, invoice_id=invoice_id)
    if as_json:
        print_json(
            [
                {
                    "id": str(e.entry_id),
                    "kind": e.kind,
                    "source": str(e.source_id),
                    "effective_at": e.effective_at.isoformat(),
                    "lines": [
                        {"account": a, "currency": c, "amount": format(v, "f"), "invoice_line": n}
                        for a, c, v, n in e.lines
                    ],
                }
                for e in found
            ]
        )
        return
    table(
        "ledger entries",
        ["kind", "effective at", "account", "amount", "invoice line"],
        [
            [e.kind, e.effective_at.isoformat(), a, f"{format(v, 'f')} {c}", "" if n is None else str(n)]
            for e in found
            for a, c, v, n in e.lines
        ],
    )


@ledger_app.command("periods")
def periods(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """Every month ever closed, with its state now."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        found = ledger.periods(db, tenant_id=tenant_id)
    if as_json:
        print_json([p.snapshot() for p in found])
        return
    table(
        "accounting periods",
        ["month", "status", "changed at", "by", "reason"],
        [[p.month, p.status, p.changed_at.isoformat(), p.changed_by, p.reason or ""] for p in found],
    )


@ledger_app.command("close-period")
def close_period(
    tenant: TenantOption,
    month: Annotated[str, typer.Argument(help="YYYY-MM, in the tenant's time zone.")],
    as_json: JsonFlag = False,
) -> None:
    """Close an ended month: no ledger entry may be effective in it afterwards."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        view = ledger.close_period(
            db, tenant_id=tenant_id, month=month, actor=cli_actor(), now=SYSTEM_CLOCK.now()
        )
    if as_json:
        print_json(view.snapshot())
    else:
        out.print(f"{view.month} closed", highlight=False)


@ledger_app.command("reopen-period")
def reopen_period(
    tenant: TenantOption,
    month: Annotated[str, typer.Argument(help="YYYY-MM, in the tenant's time zone.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is reopened (audited).")],
    as_json: JsonFlag = False,
) -> None:
    """Reopen a closed month, saying why."""
    tenant_id = parse_uuid(tenant, what="--tenant")
    with command_database() as db:
        view = ledger.reopen_period(
            db, tenant_id=tenant_id, month=month, reason=reason, actor=cli_actor(), now=SYSTEM_CLOCK.now()
        )
    if as_json:
        print_json(view.snapshot())
    else:
        out.print(f"{view.month} reopened: {view.reason}", highlight=False)
