"""Invoices, their lines, numbers, credit notes, payments and customer balances.

Amounts here are integer minor units, as stored; services turn them into `Decimal`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrual.domain.errors import Conflict
from accrual.store import constraints
from accrual.store.database import array_param, dumps_json, insert_rows
from accrual.store.schema import (
    billing_failures,
    billing_point_results,
    billing_points,
    billing_queue,
    credit_notes,
    customer_balance_entries,
    invoice_lines,
    invoices,
    late_usage_claims,
    payments,
    subscriptions,
)


class InvoiceAlreadyComposed(Conflict):
    title = "Billing point already invoiced"


constraints.register(
    "uq_invoices_tenant_id_billing_point_id",
    lambda: InvoiceAlreadyComposed("this billing point already has its invoice"),
)


# --- numbers ---------------------------------------------------------------------------------


def next_number(conn: sa.Connection, *, tenant_id: uuid.UUID, kind: str) -> int:
    """The next number of `kind` for the tenant, gap-free (see `next_numbers`)."""
    return next_numbers(conn, tenant_id=tenant_id, kind=kind, count=1)


# --- invoices --------------------------------------------------------------------------------


def get(
    conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID, for_update: bool = False
) -> sa.Row[Any] | None:
    query = sa.select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.invoice_id == invoice_id)
    if for_update:
        query = query.with_for_update()
    return conn.execute(query).first()


def require(conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> sa.Row[Any]:
    """An invoice known to exist (read back after a change in the same transaction)."""
    return conn.execute(
        sa.select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.invoice_id == invoice_id)
    ).one()


def get_by_number(conn: sa.Connection, *, tenant_id: uuid.UUID, number: str) -> sa.Row[Any] | None:
    return conn.execute(
        sa.select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.number == number)
    ).first()


def update(
    conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    conn.execute(
        sa.update(invoices)
        .where(invoices.c.tenant_id == tenant_id, invoices.c.invoice_id == invoice_id)
        .values(dict(values))
    )


def delete_draft(conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> None:
    """Delete a draft and its lines (the database refuses for a finalized invoice)."""
    conn.execute(
        sa.delete(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.invoice_id == invoice_id)
    )


def select_invoices(*, tenant_id: uuid.UUID) -> sa.Select[Any]:
    return sa.select(invoices).where(invoices.c.tenant_id == tenant_id)


def lines_of(
    conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[sa.Row[Any]]]:
    """The lines of these invoices, in order, by invoice (one query)."""
    found: dict[uuid.UUID, list[sa.Row[Any]]] = {invoice_id: [] for invoice_id in invoice_ids}
    if not invoice_ids:
        return found
    rows = conn.execute(
        sa.select(invoice_lines)
        .where(invoice_lines.c.tenant_id == tenant_id, invoice_lines.c.invoice_id.in_(list(invoice_ids)))
        .order_by(invoice_lines.c.invoice_id, invoice_lines.c.line_no)
    )
    for row in rows:
        found[row.invoice_id].append(row)
    return found


def insert_lines(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        insert_rows(conn, invoice_lines, rows)


def delete_lines(
    conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID, kinds: Sequence[str] | None = None
) -> None:
    query = sa.delete(invoice_lines).where(
        invoice_lines.c.tenant_id == tenant_id, invoice_lines.c.invoice_id == invoice_id
    )
    if kinds is not None:
        query = query.where(invoice_lines.c.kind.in_(list(kinds)))
    conn.execute(query)


# --- billing points --------------------------------------------------------------------------


def _unbilled_points(tenant_id: uuid.UUID | None, test_clock_id: uuid.UUID | None) -> sa.Select[Any]:
    """Queued billing points (those without a result) not set aside."""
    return sa.select(billing_queue).where(
        _not_set_aside(billing_queue), _on_clock(billing_queue, tenant_id, test_clock_id)
    )


def _not_set_aside(table: sa.Table) -> sa.ColumnElement[bool]:
    """Rows (billing points, or the drafts they made) whose billing point is not set aside."""
    failed = sa.select(billing_failures.c.billing_point_id).where(
        billing_failures.c.tenant_id == table.c.tenant_id,
        billing_failures.c.billing_point_id == table.c.billing_point_id,
    )
    return ~sa.exists(failed)


def _on_clock(
    table: sa.Table, tenant_id: uuid.UUID | None, test_clock_id: uuid.UUID | None
) -> sa.ColumnElement[bool]:
    """Rows of the real clock (any tenant), or of one test clock of one tenant."""
    if test_clock_id is None:
        return table.c.test_clock_id.is_(None)
    return sa.and_(table.c.tenant_id == tenant_id, table.c.test_clock_id == test_clock_id)


def _earliest(
    conn: sa.Connection, query: sa.Select[Any], column: sa.Column[Any], until: dt.datetime
) -> dt.datetime | None:
    inner = query.where(column <= until).subquery()
    found: dt.datetime | None = conn.execute(sa.select(sa.func.min(inner.c[column.name]))).scalar_one()
    return found


def earliest_unbilled_point(
    conn: sa.Connection, *, tenant_id: uuid.UUID | None, test_clock_id: uuid.UUID | None, until: dt.datetime
) -> dt.datetime | None:
    return _earliest(conn, _unbilled_points(tenant_id, test_clock_id), billing_queue.c.at, until)


def unbilled_points(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID | None,
    test_clock_id: uuid.UUID | None,
    at: dt.datetime,
    limit: int,
) -> list[sa.Row[Any]]:
    """Billing points due at or before `at` without a result, in the order their invoices are
    numbered: by instant, then by when their subscriptions were created. Rows of the queue
    (tenant_id, billing_point_id, at, test_clock_id, subscription_created_at, subscription_id,
    history_seq), read through its index: the cost is the batch's, not the points'."""
    query = (
        _unbilled_points(tenant_id, test_clock_id)
        .where(billing_queue.c.at <= at)
        .order_by(
            billing_queue.c.at,
            billing_queue.c.subscription_created_at,
            billing_queue.c.subscription_id,
            billing_queue.c.history_seq,
        )
        .limit(limit)
    )
    return list(conn.execute(query))


def get_point(
    conn: sa.Connection, *, tenant_id: uuid.UUID, billing_point_id: uuid.UUID
) -> sa.Row[Any] | None:
    return conn.execute(
        sa.select(billing_points).where(
            billing_points.c.tenant_id == tenant_id, billing_points.c.billing_point_id == billing_point_id
        )
    ).first()


def record_failure(
    conn: sa.Connection, *, tenant_id: uuid.UUID, billing_point_id: uuid.UUID, error: str, at: dt.datetime
) -> None:
    conn.execute(
        sa.text(
            "insert into billing_failures (tenant_id, billing_point_id, error, failed_at) "
            "values (:t, :p, :e, :a) on conflict (tenant_id, billing_point_id) "
            "do update set error = excluded.error, failed_at = excluded.failed_at"
        ),
        {"t": tenant_id, "p": billing_point_id, "e": error, "a": at},
    )


def failures(conn: sa.Connection, *, tenant_id: uuid.UUID | None) -> list[sa.Row[Any]]:
    query = sa.select(billing_failures, billing_points.c.subscription_id, billing_points.c.at).join(
        billing_points,
        (billing_points.c.tenant_id == billing_failures.c.tenant_id)
        & (billing_points.c.billing_point_id == billing_failures.c.billing_point_id),
    )
    if tenant_id is not None:
        query = query.where(billing_failures.c.tenant_id == tenant_id)
    return list(conn.execute(query.order_by(billing_points.c.at)))


def clear_failures(conn: sa.Connection, *, tenant_id: uuid.UUID | None) -> int:
    query = sa.delete(billing_failures)
    if tenant_id is not None:
        query = query.where(billing_failures.c.tenant_id == tenant_id)
    return conn.execute(query).rowcount


# --- drafts that finalize on their own ----------------------------------------------------------


def _drafts_due(tenant_id: uuid.UUID | None, test_clock_id: uuid.UUID | None) -> sa.Select[Any]:
    return sa.select(invoices).where(
        invoices.c.status == "draft",
        invoices.c.finalize_at.is_not(None),
        _on_clock(invoices, tenant_id, test_clock_id),
        _not_set_aside(invoices),
    )


def earliest_draft_due(
    conn: sa.Connection, *, tenant_id: uuid.UUID | None, test_clock_id: uuid.UUID | None, until: dt.datetime
) -> dt.datetime | None:
    return _earliest(conn, _drafts_due(tenant_id, test_clock_id), invoices.c.finalize_at, until)


def drafts_due(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID | None,
    test_clock_id: uuid.UUID | None,
    at: dt.datetime,
    limit: int,
) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]]:
    """(tenant, invoice, billing point) of drafts due to finalize at or before `at`, in
    numbering order."""
    query = (
        _drafts_due(tenant_id, test_clock_id)
        .outerjoin(
            subscriptions,
            (subscriptions.c.tenant_id == invoices.c.tenant_id)
            & (subscriptions.c.subscription_id == invoices.c.subscription_id),
        )
        .where(invoices.c.finalize_at <= at)
        .order_by(
            invoices.c.finalize_at, subscriptions.c.created_at, invoices.c.created_at, invoices.c.invoice_id
        )
        .limit(limit)
    )
    return [(row.tenant_id, row.invoice_id, row.billing_point_id) for row in conn.execute(query)]


# --- late usage -----------------------------------------------------------------------------------


def claim_late_usage(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, invoice_id: uuid.UUID
) -> list[sa.Row[Any]]:
    """Claim the subscription's late events no invoice has billed yet, for `invoice_id`
    (see `claim_late_usage_many`)."""
    return claim_late_usage_many(conn, tenant_id=tenant_id, invoice_of={subscription_id: invoice_id})


def release_late_claims(conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_id: uuid.UUID) -> None:
    conn.execute(
        sa.delete(late_usage_claims).where(
            late_usage_claims.c.tenant_id == tenant_id, late_usage_claims.c.invoice_id == invoice_id
        )
    )


def billed_usage_lines(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, meter_ids: Sequence[uuid.UUID]
) -> list[sa.Row[Any]]:
    """Usage, minimum and late-usage lines that finalized invoices (void ones included: their
    lines are not billed again) billed the subscription for these meters, with their window."""
    return list(
        conn.execute(
            sa.select(invoice_lines)
            .join(
                invoices,
                (invoices.c.tenant_id == invoice_lines.c.tenant_id)
                & (invoices.c.invoice_id == invoice_lines.c.invoice_id),
            )
            .where(
                invoices.c.tenant_id == tenant_id,
                invoices.c.subscription_id == subscription_id,
                invoices.c.status != "draft",
                invoice_lines.c.meter_id.in_(list(meter_ids)),
                invoice_lines.c.window_start.is_not(None),
            )
            .order_by(invoice_lines.c.window_start)
        )
    )


# --- balances, credit notes, payments -------------------------------------------------------


def balances(conn: sa.Connection, *, tenant_id: uuid.UUID, customer_id: uuid.UUID) -> dict[str, int]:
    rows = conn.execute(
        sa.select(customer_balance_entries.c.currency, sa.func.sum(customer_balance_entries.c.amount))
        .where(
            customer_balance_entries.c.tenant_id == tenant_id,
            customer_balance_entries.c.customer_id == customer_id,
        )
        .group_by(customer_balance_entries.c.currency)
        .order_by(customer_balance_entries.c.currency)
    )
    return {currency: int(amount) for currency, amount in rows}


def add_balance_entry(conn: sa.Connection, values: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(customer_balance_entries).values(dict(values)))


def lock_customer_balance(conn: sa.Connection, *, tenant_id: uuid.UUID, customer_id: uuid.UUID) -> None:
    lock_customer_balances(conn, tenant_id=tenant_id, customer_ids=[customer_id])


def insert_credit_note(conn: sa.Connection, values: Mapping[str, Any]) -> sa.Row[Any]:
    return conn.execute(sa.insert(credit_notes).values(dict(values)).returning(credit_notes)).one()


def _of_invoices(
    conn: sa.Connection,
    table: sa.Table,
    *,
    tenant_id: uuid.UUID,
    invoice_ids: Sequence[uuid.UUID],
    order: Sequence[Any],
) -> list[sa.Row[Any]]:
    if not invoice_ids:
        return []
    query = sa.select(table).where(table.c.tenant_id == tenant_id, table.c.invoice_id.in_(list(invoice_ids)))
    return list(conn.execute(query.order_by(*order)))


def credit_notes_of(
    conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]
) -> list[sa.Row[Any]]:
    order = [credit_notes.c.created_at, credit_notes.c.number]
    return _of_invoices(conn, credit_notes, tenant_id=tenant_id, invoice_ids=invoice_ids, order=order)


def select_credit_notes(*, tenant_id: uuid.UUID) -> sa.Select[Any]:
    return sa.select(credit_notes).where(credit_notes.c.tenant_id == tenant_id)


def get_credit_note(
    conn: sa.Connection, *, tenant_id: uuid.UUID, credit_note_id: uuid.UUID
) -> sa.Row[Any] | None:
    return conn.execute(
        sa.select(credit_notes).where(
            credit_notes.c.tenant_id == tenant_id, credit_notes.c.credit_note_id == credit_note_id
        )
    ).first()


def insert_payment(conn: sa.Connection, values: Mapping[str, Any]) -> sa.Row[Any]:
    return conn.execute(sa.insert(payments).values(dict(values)).returning(payments)).one()


def payments_of(
    conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]
) -> list[sa.Row[Any]]:
    order = [payments.c.received_at, payments.c.payment_id]
    return _of_invoices(conn, payments, tenant_id=tenant_id, invoice_ids=invoice_ids, order=order)


# --- set-based forms, for billing runs ---------------------------------------------------------


def points_by_ids(
    conn: sa.Connection, *, tenant_id: uuid.UUID, point_ids: Sequence[uuid.UUID]
) -> list[sa.Row[Any]]:
    return list(
        conn.execute(
            sa.select(billing_points).where(
                billing_points.c.tenant_id == tenant_id,
                billing_points.c.billing_point_id.in_(list(point_ids)),
            )
        )
    )


def billed_points(
    conn: sa.Connection, *, tenant_id: uuid.UUID, point_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    rows = conn.execute(
        sa.select(billing_point_results.c.billing_point_id).where(
            billing_point_results.c.tenant_id == tenant_id,
            billing_point_results.c.billing_point_id.in_(list(point_ids)),
        )
    )
    return {row.billing_point_id for row in rows}


def insert_many(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        insert_rows(conn, invoices, rows)


def record_point_results(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        insert_rows(conn, billing_point_results, rows)


def delete_drafts(conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]) -> None:
    if invoice_ids:
        conn.execute(
            sa.delete(invoices).where(
                invoices.c.tenant_id == tenant_id, invoices.c.invoice_id.in_(list(invoice_ids))
            )
        )


_TOTALS = """
UPDATE invoices i SET subtotal = v.subtotal, discount = v.discount, tax = v.tax, total = v.total,
       credit_applied = v.credit_applied, amount_due = v.amount_due, coupon_id = v.coupon_id
  FROM unnest(cast(:ids AS uuid[]), cast(:subtotal AS bigint[]), cast(:discount AS bigint[]),
              cast(:tax AS bigint[]), cast(:total AS bigint[]), cast(:credit AS bigint[]),
              cast(:due AS bigint[]), cast(:coupon AS uuid[]))
       AS v(invoice_id, subtotal, discount, tax, total, credit_applied, amount_due, coupon_id)
 WHERE i.tenant_id = :t AND i.invoice_id = v.invoice_id
"""


def set_totals(conn: sa.Connection, *, tenant_id: uuid.UUID, rows: Sequence[Mapping[str, Any]]) -> None:
    """Drafts' totals, in one statement: rows of {invoice_id, subtotal, discount, tax, total,
    credit_applied, amount_due, coupon_id}."""
    if not rows:
        return
    conn.execute(
        sa.text(_TOTALS),
        {
            "t": tenant_id,
            "ids": array_param([r["invoice_id"] for r in rows]),
            "subtotal": array_param([r["subtotal"] for r in rows]),
            "discount": array_param([r["discount"] for r in rows]),
            "tax": array_param([r["tax"] for r in rows]),
            "total": array_param([r["total"] for r in rows]),
            "credit": array_param([r["credit_applied"] for r in rows]),
            "due": array_param([r["amount_due"] for r in rows]),
            "coupon": array_param([r["coupon_id"] for r in rows]),
        },
    )


_FINALIZE = """
UPDATE invoices i SET status = v.status, number = v.number, finalize_at = NULL, finalized_at = :now,
       due_at = v.due_at, paid_at = CASE WHEN v.status = 'paid' THEN cast(:now AS timestamptz) END,
       credit_applied = v.credit_applied, amount_due = v.amount_due, seller = cast(:seller AS jsonb),
       buyer = v.buyer, updated_at = :now
  FROM unnest(cast(:ids AS uuid[]), cast(:status AS text[]), cast(:number AS text[]),
              cast(:due_at AS timestamptz[]), cast(:credit AS bigint[]), cast(:due AS bigint[]),
              cast(:buyer AS jsonb[]))
       AS v(invoice_id, status, number, due_at, credit_applied, amount_due, buyer)
 WHERE i.tenant_id = :t AND i.invoice_id = v.invoice_id
"""


# The same, for drafts composed in this transaction whose totals are not written yet.
_FINALIZE_COMPOSED = """
UPDATE invoices i SET status = v.status, number = v.number, finalize_at = NULL, finalized_at = :now,
       due_at = v.due_at, paid_at = CASE WHEN v.status = 'paid' THEN cast(:now AS timestamptz) END,
       credit_applied = v.credit_applied, amount_due = v.amount_due, seller = cast(:seller AS jsonb),
       buyer = v.buyer, updated_at = :now, subtotal = v.subtotal, discount = v.discount, tax = v.tax,
       total = v.total, coupon_id = v.coupon_id
  FROM unnest(cast(:ids AS uuid[]), cast(:status AS text[]), cast(:number AS text[]),
              cast(:due_at AS timestamptz[]), cast(:credit AS bigint[]), cast(:due AS bigint[]),
              cast(:buyer AS jsonb[]), cast(:subtotal AS bigint[]), cast(:discount AS bigint[]),
              cast(:tax AS bigint[]), cast(:total AS bigint[]), cast(:coupon AS uuid[]))
       AS v(invoice_id, status, number, due_at, credit_applied, amount_due, buyer, subtotal, discount,
            tax, total, coupon_id)
 WHERE i.tenant_id = :t AND i.invoice_id = v.invoice_id
"""


def finalize_many(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    now: dt.datetime,
    seller: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Number, settle and freeze drafts in one statement: rows of {invoice_id, status, number,
    due_at, credit_applied, amount_due, buyer}, and, for drafts whose totals are not written
    yet (all or none of the rows), {subtotal, discount, tax, total, coupon_id}."""
    if not rows:
        return
    params = {
        "t": tenant_id,
        "now": now,
        "seller": json.dumps(dict(seller)),
        "ids": array_param([r["invoice_id"] for r in rows]),
        "status": array_param([r["status"] for r in rows]),
        "number": array_param([r["number"] for r in rows]),
        "due_at": array_param([r["due_at"] for r in rows]),
        "credit": array_param([r["credit_applied"] for r in rows]),
        "due": array_param([r["amount_due"] for r in rows]),
        "buyer": array_param([dumps_json(r["buyer"]) for r in rows]),
    }
    if "total" not in rows[0]:
        conn.execute(sa.text(_FINALIZE), params)
        return
    totals = {
        "subtotal": array_param([r["subtotal"] for r in rows]),
        "discount": array_param([r["discount"] for r in rows]),
        "tax": array_param([r["tax"] for r in rows]),
        "total": array_param([r["total"] for r in rows]),
        "coupon": array_param([r["coupon_id"] for r in rows]),
    }
    conn.execute(sa.text(_FINALIZE_COMPOSED), params | totals)


def next_numbers(conn: sa.Connection, *, tenant_id: uuid.UUID, kind: str, count: int) -> int:
    """Take the next `count` consecutive numbers of `kind` for the tenant, gap-free; return the
    first. The counter row stays locked until the transaction ends, so numbers are handed out
    in commit order, and a rolled-back transaction gives its numbers back."""
    last: int = conn.execute(
        sa.text(
            "insert into document_counters (tenant_id, kind, last_number) values (:t, :k, :n) "
            "on conflict (tenant_id, kind) do update set last_number = document_counters.last_number + :n "
            "returning last_number"
        ),
        {"t": tenant_id, "k": kind, "n": count},
    ).scalar_one()
    return last - count + 1


def lock_customer_balances(
    conn: sa.Connection, *, tenant_id: uuid.UUID, customer_ids: Sequence[uuid.UUID]
) -> None:
    """Serialize changes to these customers' balances (transaction-scoped advisory locks), taken
    in a fixed order so two transactions never deadlock on them."""
    if customer_ids:
        conn.execute(
            sa.text(
                "select pg_advisory_xact_lock(hashtextextended(k, 7)) "
                "from unnest(cast(:keys as text[])) k order by k"
            ),
            {"keys": array_param([f"balance:{tenant_id}:{c}" for c in sorted(set(customer_ids))])},
        )


def balances_of(
    conn: sa.Connection, *, tenant_id: uuid.UUID, customer_ids: Sequence[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], int]:
    """Credit balances of these customers, by (customer, currency); absent when there is none."""
    if not customer_ids:
        return {}
    rows = conn.execute(
        sa.select(
            customer_balance_entries.c.customer_id,
            customer_balance_entries.c.currency,
            sa.func.sum(customer_balance_entries.c.amount),
        )
        .where(
            customer_balance_entries.c.tenant_id == tenant_id,
            customer_balance_entries.c.customer_id.in_(sorted(set(customer_ids))),
        )
        .group_by(customer_balance_entries.c.customer_id, customer_balance_entries.c.currency)
    )
    return {(customer, currency): int(amount) for customer, currency, amount in rows}


def add_balance_entries(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        insert_rows(conn, customer_balance_entries, rows)


_CLAIM_MANY = """
INSERT INTO late_usage_claims (tenant_id, subscription_id, meter_id, ts, event_id, invoice_id)
SELECT e.tenant_id, e.subscription_id, e.meter_id, e.ts, e.event_id, p.invoice_id
  FROM unnest(cast(:subs AS uuid[]), cast(:invoices AS uuid[])) p(subscription_id, invoice_id)
  JOIN usage_events e ON e.tenant_id = :t AND e.subscription_id = p.subscription_id AND e.late
 WHERE NOT EXISTS (SELECT 1 FROM late_usage_claims c
                    WHERE c.tenant_id = e.tenant_id AND c.subscription_id = e.subscription_id
                      AND c.meter_id = e.meter_id AND c.ts = e.ts AND c.event_id = e.event_id)
ON CONFLICT DO NOTHING RETURNING subscription_id, meter_id, ts, event_id
"""


def claim_late_usage_many(
    conn: sa.Connection, *, tenant_id: uuid.UUID, invoice_of: Mapping[uuid.UUID, uuid.UUID]
) -> list[sa.Row[Any]]:
    """Claim the late events no invoice has billed yet of many subscriptions, each for its
    invoice ({subscription: invoice}); return the claimed (subscription_id, meter_id, ts,
    event_id). A concurrent claim of the same event waits on the primary key, then skips it."""
    if not invoice_of:
        return []
    pairs = sorted(invoice_of.items())
    return list(
        conn.execute(
            sa.text(_CLAIM_MANY),
            {
                "t": tenant_id,
                "subs": array_param([s for s, _ in pairs]),
                "invoices": array_param([i for _, i in pairs]),
            },
        )
    )


def coupon_periods(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID]
) -> dict[tuple[uuid.UUID, uuid.UUID], list[tuple[dt.datetime | None, dt.datetime, uuid.UUID]]]:
    """The invoices each (subscription, coupon) discounted: (period end, created at, invoice id)."""
    if not subscription_ids:
        return {}
    rows = conn.execute(
        sa.select(
            invoices.c.subscription_id,
            invoices.c.coupon_id,
            invoices.c.period_end,
            invoices.c.created_at,
            invoices.c.invoice_id,
        ).where(
            invoices.c.tenant_id == tenant_id,
            invoices.c.subscription_id.in_(list(subscription_ids)),
            invoices.c.coupon_id.is_not(None),
        )
    )
    found: dict[tuple[uuid.UUID, uuid.UUID], list[tuple[dt.datetime | None, dt.datetime, uuid.UUID]]] = {}
    for row in rows:
        found.setdefault((row.subscription_id, row.coupon_id), []).append(
            (row.period_end, row.created_at, row.invoice_id)
        )
    return found
