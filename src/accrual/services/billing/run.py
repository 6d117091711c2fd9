"""The billing run, set-based: many billing points of a tenant become invoices in one transaction.

Everything a batch needs is read in a fixed number of statements (the points, their locked
subscriptions, customers, tax rates, coupons, plan versions, usage for every window at once),
the invoices are composed in Python, and written back in a fixed number more (drafts, lines,
totals, results, numbers, balances, freezing, events). The statement count of a batch does not
depend on how many invoices it holds; a test pins that.

Exactly once, whatever crashes: each point's result row and the unique billing point on the
invoice are written in the batch's transaction; the subscriptions are locked first, in id
order, and the results read after, so a run racing this one waits, then finds them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import types
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from accrual.domain import discounts, invoices, money
from accrual.domain.invoices import DraftLine, InvoiceStatus, LineKind
from accrual.services import ledger
from accrual.services.billing import compose, faults
from accrual.services.billing.compose import Billing
from accrual.services.billing.views import InvoiceView, views_of
from accrual.services.catalog.common import CouponView
from accrual.services.unit_of_work import Actor, UnitOfWork, unit_of_work
from accrual.store import ids
from accrual.store import invoices as store
from accrual.store import subscriptions as subscription_store
from accrual.store.database import TransactionSource, plan_with_values
from accrual.store.schema import coupons as coupons_table
from accrual.store.schema import invoices as invoices_table

BILLING = Actor.system("billing")


def _party(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.external_id,
        "name": row.name,
        "email": row.email,
        "address": dict(row.billing_address),
        "tax_rates": list(row.tax_rates),
    }


def _coupons(
    conn: sa.Connection, subscriptions: Sequence[sa.Row[Any]]
) -> dict[uuid.UUID, tuple[uuid.UUID, discounts.Coupon, set[Any]]]:
    """Each subscription's coupon with the billing periods (by their end) it has discounted."""
    with_coupon = [s for s in subscriptions if s.coupon_id is not None]
    if not with_coupon:
        return {}
    tenant_id = with_coupon[0].tenant_id
    rows = conn.execute(
        sa.select(coupons_table).where(
            coupons_table.c.tenant_id == tenant_id,
            coupons_table.c.coupon_id.in_(sorted({s.coupon_id for s in with_coupon})),
        )
    )
    by_id = {row.coupon_id: CouponView.of(row).coupon for row in rows}
    uses = store.coupon_periods(
        conn, tenant_id=tenant_id, subscription_ids=[s.subscription_id for s in with_coupon]
    )
    return {
        s.subscription_id: (
            s.coupon_id,
            by_id[s.coupon_id],
            {period_end for period_end, _, _ in uses.get((s.subscription_id, s.coupon_id), [])},
        )
        for s in with_coupon
    }


@dataclasses.dataclass(frozen=True)
class _Composed:
    invoice_id: uuid.UUID
    point: sa.Row[Any]
    subscription: sa.Row[Any]
    billing: Billing
    composition: invoices.Composition
    coupon_id: uuid.UUID | None


def _minor(amount: Decimal, currency: money.Currency) -> int:
    return money.to_minor_units(amount, currency)


class Turn:
    """A batch's place in a pipelined billing run (`due.BillingPointsDue`): batches overlap,
    each composing while the one before it writes, yet they number their invoices in order.
    (A batch billed in another process relays its turn: `lanes`.)

    A batch starts once the batch before it holds its subscriptions' locks, and takes its
    numbers once the batch before it has ended. So no batch ever waits, in Python, for one that
    waits on its locks: the batch before has taken every subscription lock it needs when the
    next one starts, and the locks taken later (the number counter, customers' balances) are
    taken by the next batch only after it has ended.
    """

    def __init__(self, after: Turn | None) -> None:
        self.after = after
        self.locked = threading.Event()
        self.ended = threading.Event()

    def mark_locked(self) -> None:
        """This batch holds its subscriptions' locks: the next one may start."""
        self.locked.set()

    def wait_to_start(self) -> None:
        if self.after is not None:
            self.after.locked.wait()

    def wait_to_number(self) -> None:
        if self.after is not None:
            self.after.ended.wait()

    def end(self) -> None:
        self.locked.set()
        self.ended.set()


def bill_points(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    point_ids: Sequence[uuid.UUID],
    at: dt.datetime,
    turn: Turn | None = None,
) -> dict[uuid.UUID, uuid.UUID | None]:
    """Compose the invoices of these billing points of one tenant, all due at `at`, and finalize
    those without a grace period. Points already billed are skipped. Returns each point billed
    now with its invoice (None when it had no line to bill). `turn`: the batch's place in a
    pipelined run (the caller ends it)."""
    with unit_of_work(db, tenant_id=tenant_id, actor=BILLING, now=at) as uow:
        conn = uow.conn
        plan_with_values(conn)
        candidates = {
            p.billing_point_id: p for p in store.points_by_ids(conn, tenant_id=tenant_id, point_ids=point_ids)
        }
        # The subscriptions' locks order this after any ingestion still writing their usage,
        # and after any run billing the same points; only then are results read.
        subscriptions = subscription_store.lock_many(
            conn, tenant_id=tenant_id, subscription_ids=[p.subscription_id for p in candidates.values()]
        )
        if turn is not None:
            turn.mark_locked()
        done = store.billed_points(conn, tenant_id=tenant_id, point_ids=list(candidates))
        points = [candidates[pid] for pid in point_ids if pid in candidates and pid not in done]
        if not points:
            return {}
        billings = Billing.load_many(
            conn,
            tenant_id=tenant_id,
            customer_ids=[subscriptions[p.subscription_id].customer_id for p in points],
        )
        version_ids = {uuid.UUID(raw["plan_version_id"]) for p in points for raw in p.fee_lines}
        versions = compose.versions_of(conn, tenant_id, sorted(version_ids))
        coupons = _coupons(conn, [subscriptions[s] for s in sorted({p.subscription_id for p in points})])
        items: list[compose.UsageToRate] = []
        owners: list[int] = []
        for k, point in enumerate(points):
            subscription = subscriptions[point.subscription_id]
            found = compose.usage_items(subscription, billings[subscription.customer_id], point.usage)
            items += found
            owners += [k] * len(found)
        lines: list[list[DraftLine]] = [compose.fee_lines(p, versions) for p in points]
        for owner, usage in zip(owners, compose.usage_lines(conn, items), strict=True):
            lines[owner] += usage
        invoice_ids = [ids.new_id() for _ in points]
        grace = {
            p.billing_point_id: billings[subscriptions[p.subscription_id].customer_id].grace_period_days
            for p in points
        }
        draft_values = [
            {
                "tenant_id": tenant_id,
                "invoice_id": invoice_id,
                "customer_id": subscriptions[p.subscription_id].customer_id,
                "subscription_id": p.subscription_id,
                "billing_point_id": p.billing_point_id,
                "reason": p.reason,
                "status": InvoiceStatus.DRAFT.value,
                "currency": billings[subscriptions[p.subscription_id].customer_id].currency.code,
                "period_start": p.period_start,
                "period_end": p.period_end,
                "created_at": at,
                "finalize_at": at + dt.timedelta(days=grace[p.billing_point_id]),
                "test_clock_id": subscriptions[p.subscription_id].test_clock_id,
                "updated_at": at,
            }
            for p, invoice_id in zip(points, invoice_ids, strict=True)
        ]
        store.insert_many(conn, draft_values)
        drafts_by_id = {d["invoice_id"]: d for d in draft_values}
        _add_late_usage(
            conn,
            tenant_id,
            points=points,
            invoice_ids=invoice_ids,
            lines=lines,
            subscriptions=subscriptions,
            billings=billings,
        )
        faults.reach("composed")
        composed, empty = _compose(
            points,
            invoice_ids=invoice_ids,
            lines=lines,
            subscriptions=subscriptions,
            billings=billings,
            coupons=coupons,
        )
        line_rows = compose.composition_rows(
            tenant_id=tenant_id, compositions=[(c.invoice_id, c.composition) for c in composed]
        )
        store.insert_lines(conn, [row for rows in line_rows for row in rows])
        totals = [_totals(c) for c in composed]
        # Drafts finalized now get their totals as they are numbered: one update, not two.
        due_now = {c.invoice_id for c in composed if drafts_by_id[c.invoice_id]["finalize_at"] <= at}
        store.set_totals(
            conn, tenant_id=tenant_id, rows=[t for t in totals if t["invoice_id"] not in due_now]
        )
        store.delete_drafts(conn, tenant_id=tenant_id, invoice_ids=empty)
        store.record_point_results(
            conn,
            [
                {
                    "tenant_id": tenant_id,
                    "billing_point_id": p.billing_point_id,
                    "invoice_id": None if invoice_id in empty else invoice_id,
                    "processed_at": at,
                }
                for p, invoice_id in zip(points, invoice_ids, strict=True)
            ],
        )
        faults.reach("lines_written")
        # The drafts as written, without reading them back.
        drafts = [
            _draft_row(drafts_by_id[c.invoice_id], total) for c, total in zip(composed, totals, strict=True)
        ]
        created = [
            InvoiceView.of(
                draft,
                [_as_row(row) for row in rows],
                customer=c.billing.customer.external_id,
                subscription=c.subscription.external_id or str(c.subscription.subscription_id),
            )
            for c, draft, rows in zip(composed, drafts, line_rows, strict=True)
        ]
        line_snapshots: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for view in created:
            snapshot = view.snapshot()
            line_snapshots[view.invoice_id] = snapshot["lines"]
            entity = str(view.invoice_id)
            uow.emit("invoice.created", entity_type="invoice", entity_id=entity, payload=snapshot)
            if view.invoice_id not in due_now:
                uow.record(
                    "invoice.created", entity_type="invoice", entity_id=entity, before=None, after=snapshot
                )
        # Finalized in the transaction that made them: one audit record of the finished invoice.
        finalize(
            uow,
            [row for row in drafts if row.invoice_id in due_now],
            billings,
            created_now=True,
            views=[view for view in created if view.invoice_id in due_now],
            line_snapshots=line_snapshots,
            unwritten_totals={t["invoice_id"]: t for t in totals if t["invoice_id"] in due_now},
            turn=turn,
        )
        result: dict[uuid.UUID, uuid.UUID | None] = {
            p.billing_point_id: (None if invoice_id in empty else invoice_id)
            for p, invoice_id in zip(points, invoice_ids, strict=True)
        }
        return result


def _add_late_usage(
    conn: sa.Connection,
    tenant_id: uuid.UUID,
    *,
    points: Sequence[sa.Row[Any]],
    invoice_ids: Sequence[uuid.UUID],
    lines: list[list[DraftLine]],
    subscriptions: Mapping[uuid.UUID, sa.Row[Any]],
    billings: Mapping[uuid.UUID, Billing],
) -> None:
    """Late events are claimed by each subscription's first invoice of the batch, and billed on it."""
    invoice_of: dict[uuid.UUID, uuid.UUID] = {}
    for p, invoice_id in zip(points, invoice_ids, strict=True):
        invoice_of.setdefault(p.subscription_id, invoice_id)
    claimed = store.claim_late_usage_many(conn, tenant_id=tenant_id, invoice_of=invoice_of)
    for subscription_id in sorted({row.subscription_id for row in claimed}):
        k = list(invoice_ids).index(invoice_of[subscription_id])
        subscription = subscriptions[subscription_id]
        lines[k] += compose.late_usage_lines_of(
            conn,
            billings[subscription.customer_id],
            subscription=subscription,
            claimed=[row for row in claimed if row.subscription_id == subscription_id],
        )


def _compose(
    points: Sequence[sa.Row[Any]],
    *,
    invoice_ids: Sequence[uuid.UUID],
    lines: Sequence[Sequence[DraftLine]],
    subscriptions: Mapping[uuid.UUID, sa.Row[Any]],
    billings: Mapping[uuid.UUID, Billing],
    coupons: Mapping[uuid.UUID, tuple[uuid.UUID, discounts.Coupon, set[Any]]],
) -> tuple[list[_Composed], list[uuid.UUID]]:
    """Discount, tax and total each point's lines; and the invoices with no line at all."""
    composed: list[_Composed] = []
    empty: list[uuid.UUID] = []
    used = {sid: set(entry[2]) for sid, entry in coupons.items()}
    for point, invoice_id, point_lines in zip(points, invoice_ids, lines, strict=True):
        if not point_lines:
            empty.append(invoice_id)
            continue
        subscription = subscriptions[point.subscription_id]
        billing = billings[subscription.customer_id]
        entry = coupons.get(subscription.subscription_id)
        coupon = None
        periods = used.get(subscription.subscription_id, set())
        if entry is not None and entry[1].discounts_period(periods_applied=len(periods - {point.period_end})):
            coupon = entry[1]
        composition = invoices.compose(
            point_lines, currency=billing.currency, coupon=coupon, tax_rates=billing.tax_rates
        )
        coupon_id = None
        if entry is not None and coupon is not None and composition.coupon_applied:
            coupon_id = entry[0]
            periods.add(point.period_end)
        composed.append(_Composed(invoice_id, point, subscription, billing, composition, coupon_id))
    return composed, empty


def _as_row(values: Mapping[str, Any]) -> Any:
    """Values just written, read like the row the database holds."""
    return types.SimpleNamespace(**values)


def _draft_row(values: Mapping[str, Any], totals: Mapping[str, Any]) -> Any:
    """A draft as the database holds it after its totals are set."""
    return _as_row(
        {column.name: None for column in invoices_table.columns}
        | _DRAFT_DEFAULTS
        | dict(values)
        | dict(totals)
    )


# Columns a new draft leaves to their defaults.
_DRAFT_DEFAULTS: dict[str, Any] = {"amount_paid": 0, "amount_credited": 0, "seller": {}, "buyer": {}}


def _unwritten(totals: Mapping[uuid.UUID, Mapping[str, Any]] | None, invoice_id: uuid.UUID) -> dict[str, Any]:
    """A draft's totals to write as it is finalized (none when they are written already)."""
    if totals is None:
        return {}
    found = totals[invoice_id]
    return {key: found[key] for key in ("subtotal", "discount", "tax", "total", "coupon_id")}


def _totals(c: _Composed) -> dict[str, Any]:
    currency = c.billing.currency
    settled = invoices.settle(total=c.composition.total, balance=Decimal(0))
    return {
        "invoice_id": c.invoice_id,
        "subtotal": _minor(c.composition.subtotal, currency),
        "discount": _minor(c.composition.discount, currency),
        "tax": _minor(c.composition.tax, currency),
        "total": _minor(c.composition.total, currency),
        "credit_applied": _minor(settled.credit_applied, currency),
        "amount_due": _minor(settled.amount_due, currency),
        "coupon_id": c.coupon_id,
    }


def finalize(
    uow: UnitOfWork,
    drafts: Sequence[sa.Row[Any]],
    billings: Mapping[uuid.UUID, Billing],
    *,
    created_now: bool = False,
    views: Sequence[InvoiceView] | None = None,
    line_snapshots: Mapping[uuid.UUID, list[dict[str, Any]]] | None = None,
    unwritten_totals: Mapping[uuid.UUID, Mapping[str, Any]] | None = None,
    turn: Turn | None = None,
) -> list[InvoiceView]:
    """Number, settle and freeze drafts of one tenant composed in this transaction, in order.

    Numbers are taken in one step from the tenant's counter row; the customers' credit
    balances are locked (in a fixed order) and used invoice by invoice; usage before each
    invoice's last usage window is closed (later events for it are late). `created_now`: the
    drafts were composed in this transaction, so the audit record has no state before; `views`:
    the drafts as views, when the caller has them; `line_snapshots`: their lines' snapshots, by
    invoice, when the caller made them (finalizing changes no line); `unwritten_totals`: the
    drafts' totals (`_totals`), by invoice, when the caller has not written them yet (all of
    them or none): they are written as the drafts are finalized. `turn`: the batch's place in
    a pipelined run, whose numbers follow the batch before.
    """
    if not drafts:
        return []
    conn, tenant_id = uow.conn, uow.tenant_id
    current = list(views) if views is not None else views_of(conn, drafts)
    before: list[dict[str, Any] | None] = (
        [None] * len(drafts) if created_now else [v.snapshot() for v in current]
    )
    tenant = billings[drafts[0].customer_id].tenant
    if turn is not None:
        turn.wait_to_number()
    first = store.next_numbers(conn, tenant_id=tenant_id, kind="invoice", count=len(drafts))
    faults.reach("numbered")
    customer_ids = [d.customer_id for d in drafts]
    store.lock_customer_balances(conn, tenant_id=tenant_id, customer_ids=customer_ids)
    balances = store.balances_of(conn, tenant_id=tenant_id, customer_ids=customer_ids)
    entries: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    closes: dict[uuid.UUID, dt.datetime] = {}
    for n, (draft, view) in enumerate(zip(drafts, current, strict=True)):
        billing = billings[draft.customer_id]
        currency = billing.currency
        key = (draft.customer_id, currency.code)
        balance = max(balances.get(key, 0), 0)
        settled = invoices.settle(
            total=money.Money(minor=draft.total, currency=currency).amount,
            balance=money.Money(minor=balance, currency=currency).amount,
        )
        credit = _minor(settled.credit_applied, currency)
        if credit:
            balances[key] = balances.get(key, 0) - credit
            entries.append(
                {
                    "tenant_id": tenant_id,
                    "entry_id": ids.new_id(),
                    "customer_id": draft.customer_id,
                    "currency": currency.code,
                    "amount": -credit,
                    "source": "invoice",
                    "source_id": draft.invoice_id,
                    "created_at": uow.now,
                }
            )
        due = _minor(settled.amount_due, currency)
        paid = due == 0 and tenant.zero_amount_invoices == "mark_paid"
        rows.append(
            {
                "invoice_id": draft.invoice_id,
                "status": (InvoiceStatus.PAID if paid else InvoiceStatus.OPEN).value,
                "number": invoices.format_number(tenant.invoice_prefix, first + n),
                "due_at": invoices.due_at(uow.now, payment_terms_days=billing.payment_terms_days),
                "credit_applied": credit,
                "amount_due": due,
                "buyer": _party(billing.customer),
            }
            | _unwritten(unwritten_totals, draft.invoice_id)
        )
        if draft.subscription_id is not None:
            ends = [line.period.end for line in view.lines if line.kind is LineKind.USAGE and line.period]
            if ends:
                closes[draft.subscription_id] = max([*ends, closes.get(draft.subscription_id, ends[0])])
    store.add_balance_entries(conn, entries)
    seller = dict(tenant.seller) | {"name": tenant.seller.get("name", tenant.name)}
    store.finalize_many(conn, tenant_id=tenant_id, now=uow.now, seller=seller, rows=rows)
    # Usage before this instant is invoiced: events for it that arrive later are late.
    subscription_store.close_usage(conn, tenant_id=tenant_id, until=closes)
    # What was just written, without reading it back.
    after = [
        dataclasses.replace(
            view,
            number=row["number"],
            status=InvoiceStatus(row["status"]),
            finalize_at=None,
            finalized_at=uow.now,
            due_at=row["due_at"],
            paid_at=uow.now if row["status"] == InvoiceStatus.PAID else None,
            credit_applied=money.Money(minor=row["credit_applied"], currency=view.currency).amount,
            amount_due=money.Money(minor=row["amount_due"], currency=view.currency).amount,
            seller=seller,
            buyer=row["buyer"],
        )
        for view, row in zip(current, rows, strict=True)
    ]
    ledger.post_finalized(
        uow,
        [
            ledger.finalized(view, amount_due=row["amount_due"], credit_applied=row["credit_applied"])
            for view, row in zip(after, rows, strict=True)
        ],
    )
    known_lines = line_snapshots or {}
    for old, new in zip(before, after, strict=True):
        payload = new.snapshot(lines=known_lines.get(new.invoice_id))
        entity = str(new.invoice_id)
        uow.record("invoice.finalized", entity_type="invoice", entity_id=entity, before=old, after=payload)
        uow.emit("invoice.finalized", entity_type="invoice", entity_id=entity, payload=payload)
        if new.status is InvoiceStatus.PAID:
            uow.emit("invoice.paid", entity_type="invoice", entity_id=entity, payload=payload)
    return after
