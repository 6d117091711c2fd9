"""Ledger entries and lines: posted once per key, read as balances."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrual.domain.ledger import Account, Leg
from accrual.store import ids
from accrual.store.database import array_param, insert_rows
from accrual.store.schema import accounting_period_changes, invoices, ledger_entries, ledger_lines


@dataclasses.dataclass(frozen=True)
class Posting:
    """An entry to post: its kind and source (unique per tenant) make posting it again a no-op."""

    kind: str
    currency: str
    legs: tuple[Leg, ...]
    source_id: uuid.UUID
    description: str
    customer_id: uuid.UUID | None = None
    invoice_id: uuid.UUID | None = None


_ENTRIES = """
INSERT INTO ledger_entries (tenant_id, entry_id, kind, effective_at, customer_id, invoice_id, source_id,
                            description, created_at, original_effective_at)
SELECT :t, e.entry_id, e.kind, :at, e.customer_id, e.invoice_id, e.source_id, e.description,
       coalesce(cast(:original AS timestamptz), :at), cast(:original AS timestamptz)
  FROM unnest(cast(:entry_ids AS uuid[]), cast(:kinds AS text[]), cast(:customers AS uuid[]),
              cast(:invoices AS uuid[]), cast(:sources AS uuid[]), cast(:descriptions AS text[]))
       AS e(entry_id, kind, customer_id, invoice_id, source_id, description)
ON CONFLICT (tenant_id, kind, source_id) DO NOTHING
RETURNING entry_id
"""


def post(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    at: dt.datetime,
    postings: Sequence[Posting],
    original_at: dt.datetime | None = None,
) -> int:
    """Post entries not posted before (by kind and source), with their lines, in two
    statements; return how many were new. A posting with no legs left (all zero) posts nothing.
    `original_at`: when the facts happened, when that was in a closed month (`at` is then the
    start of the next open one)."""
    postings = [p for p in postings if p.legs]
    if not postings:
        return 0
    entry_ids = [ids.new_id() for _ in postings]
    new = set(
        conn.execute(
            sa.text(_ENTRIES),
            {
                "t": tenant_id,
                "at": at,
                "original": original_at,
                "entry_ids": array_param(entry_ids),
                "kinds": array_param([p.kind for p in postings]),
                "customers": array_param([p.customer_id for p in postings]),
                "invoices": array_param([p.invoice_id for p in postings]),
                "sources": array_param([p.source_id for p in postings]),
                "descriptions": array_param([p.description for p in postings]),
            },
        ).scalars()
    )
    rows: list[dict[str, Any]] = [
        {
            "tenant_id": tenant_id,
            "entry_id": entry_id,
            "line_no": n,
            "account": leg.account.value,
            "currency": posting.currency,
            "amount": leg.amount,
            "invoice_line_no": leg.invoice_line_no,
        }
        for posting, entry_id in zip(postings, entry_ids, strict=True)
        if entry_id in new
        for n, leg in enumerate(posting.legs, start=1)
    ]
    insert_rows(conn, ledger_lines, rows)
    return len(new)


_lines_of_entry = sa.and_(
    ledger_lines.c.tenant_id == ledger_entries.c.tenant_id,
    ledger_lines.c.entry_id == ledger_entries.c.entry_id,
)


def invoice_balances(
    conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID
) -> dict[tuple[Account, int | None], int]:
    """The invoice's balance on every account, by invoice line (None: the invoice as a whole)."""
    rows = conn.execute(
        sa.select(ledger_lines.c.account, ledger_lines.c.invoice_line_no, sa.func.sum(ledger_lines.c.amount))
        .join(ledger_entries, _lines_of_entry)
        .where(ledger_entries.c.tenant_id == tenant_id, ledger_entries.c.invoice_id == invoice_id)
        .group_by(ledger_lines.c.account, ledger_lines.c.invoice_line_no)
    )
    return {(Account(account), line_no): int(total) for account, line_no, total in rows if int(total) != 0}


def trial_balance(
    conn: sa.Connection, *, tenant_id: uuid.UUID, as_of: dt.datetime | None
) -> dict[tuple[str, Account], int]:
    """Every account's balance (debits positive) by currency, of entries effective at or
    before `as_of` (all of them when None)."""
    query = (
        sa.select(ledger_lines.c.currency, ledger_lines.c.account, sa.func.sum(ledger_lines.c.amount))
        .join(ledger_entries, _lines_of_entry)
        .where(ledger_lines.c.tenant_id == tenant_id)
        .group_by(ledger_lines.c.currency, ledger_lines.c.account)
    )
    if as_of is not None:
        query = query.where(ledger_entries.c.effective_at <= as_of)
    return {(currency, Account(account)): int(total) for currency, account, total in conn.execute(query)}


def entries_of(conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> list[sa.Row[Any]]:
    """The entries posted for an invoice, in order, with their lines (one row per line)."""
    return list(
        conn.execute(
            sa.select(
                ledger_entries.c.entry_id,
                ledger_entries.c.kind,
                ledger_entries.c.source_id,
                ledger_entries.c.effective_at,
                ledger_lines.c.line_no,
                ledger_lines.c.account,
                ledger_lines.c.currency,
                ledger_lines.c.amount,
                ledger_lines.c.invoice_line_no,
            )
            .join(ledger_lines, _lines_of_entry)
            .where(ledger_entries.c.tenant_id == tenant_id, ledger_entries.c.invoice_id == invoice_id)
            .order_by(ledger_entries.c.effective_at, ledger_entries.c.entry_id, ledger_lines.c.line_no)
        )
    )


def receivable_by_invoice(
    conn: sa.Connection, *, tenant_id: uuid.UUID, as_of: dt.datetime
) -> list[sa.Row[Any]]:
    """Each invoice's accounts-receivable balance as of `as_of` (entries effective by then),
    where it is not zero: (invoice_id, customer_id, currency, due_at, amount)."""
    receivable = (
        sa.select(
            ledger_entries.c.invoice_id,
            ledger_lines.c.currency,
            sa.func.sum(ledger_lines.c.amount).label("amount"),
        )
        .join(ledger_entries, _lines_of_entry)
        .where(
            ledger_lines.c.tenant_id == tenant_id,
            ledger_lines.c.account == "accounts_receivable",
            ledger_entries.c.effective_at <= as_of,
        )
        .group_by(ledger_entries.c.invoice_id, ledger_lines.c.currency)
        .having(sa.func.sum(ledger_lines.c.amount) != 0)
        .subquery()
    )
    return list(
        conn.execute(
            sa.select(
                receivable.c.invoice_id,
                invoices.c.customer_id,
                receivable.c.currency,
                invoices.c.due_at,
                receivable.c.amount,
            )
            .join(
                invoices,
                sa.and_(invoices.c.tenant_id == tenant_id, invoices.c.invoice_id == receivable.c.invoice_id),
            )
            .order_by(receivable.c.currency, invoices.c.due_at, receivable.c.invoice_id)
        )
    )


# --- accounting periods ------------------------------------------------------------------------

# First key of the advisory lock a period change takes exclusively and every posting statement
# shares (migration 0009_period_close).
PERIOD_LOCK_NAMESPACE = 0x50_45_52

_POSTING_MONTH = """
WITH m AS (
    SELECT t.timezone, date_trunc('month', cast(:at AS timestamptz) AT TIME ZONE t.timezone)::date AS month
      FROM tenants t WHERE t.tenant_id = :t
)
SELECT m.timezone, m.month,
       ARRAY(SELECT x.month FROM (SELECT DISTINCT ON (c.month) c.month, c.action
                                   FROM accounting_period_changes c
                                  WHERE c.tenant_id = :t AND c.month >= m.month
                                  ORDER BY c.month, c.change_id DESC) x
              WHERE x.action = 'close' ORDER BY x.month) AS closed
  FROM m
"""


def posting_month(
    conn: sa.Connection, *, tenant_id: uuid.UUID, at: dt.datetime
) -> tuple[str, dt.date, list[dt.date]]:
    """The tenant's time zone, the month `at` falls in there, and the closed months from it on."""
    row = conn.execute(sa.text(_POSTING_MONTH), {"t": tenant_id, "at": at}).one()
    return row.timezone, row.month, list(row.closed)


def lock_periods(conn: sa.Connection, *, tenant_id: uuid.UUID) -> None:
    """Wait for postings in flight, and keep new ones waiting until this transaction ends."""
    conn.execute(
        sa.select(sa.func.pg_advisory_xact_lock(PERIOD_LOCK_NAMESPACE, sa.func.hashtext(str(tenant_id))))
    )


def period_changes(
    conn: sa.Connection, *, tenant_id: uuid.UUID, month: dt.date | None = None
) -> list[sa.Row[Any]]:
    """Closes and reopens, by month then in order (of one month, when given)."""
    query = sa.select(accounting_period_changes).where(accounting_period_changes.c.tenant_id == tenant_id)
    if month is not None:
        query = query.where(accounting_period_changes.c.month == month)
    return list(
        conn.execute(query.order_by(accounting_period_changes.c.month, accounting_period_changes.c.change_id))
    )


def add_period_change(conn: sa.Connection, values: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(accounting_period_changes).values(dict(values)))
