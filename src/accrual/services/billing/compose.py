"""Composing an invoice: the lines of a billing point, late usage, discount, tax and totals.

A billing point (written by the subscription lifecycle in the transaction of its transition)
says when an invoice is due, for which period, with which flat-fee lines, and which usage
windows to rate. Billing turns it into a draft invoice, exactly once: the point's result row
and the unique billing point on the invoice make a retried or racing run a no-op.

A draft is (re)composed as a whole: its fixed lines (fees, prorations, one-off lines) are
kept, its usage lines are rated afresh, the subscription's late events not yet billed are
claimed as late-usage lines, and discount, tax and totals are computed over all of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from accrual.domain import discounts, invoices, meters, money, periods, pricing, taxes
from accrual.domain.invoices import DraftLine, LineKind
from accrual.domain.periods import Period
from accrual.services.catalog.common import CouponView, MeterView, TaxRateView
from accrual.services.unit_of_work import UnitOfWork
from accrual.services.usage import reads
from accrual.store import catalog as catalog_store
from accrual.store import customers as customer_store
from accrual.store import invoices as store
from accrual.store import tenants as tenant_store
from accrual.store import usage_rollups
from accrual.store.schema import coupons as coupons_table


def _instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _period_of(raw: Mapping[str, str]) -> Period:
    return Period(_instant(raw["start"]), _instant(raw["end"]))


def _period_json(period: Period) -> dict[str, str]:
    return {"start": period.start.isoformat(), "end": period.end.isoformat()}


@dataclasses.dataclass(frozen=True)
class Billing:
    """What composing an invoice for one customer needs to know, read once per transaction."""

    tenant: tenant_store.Tenant
    customer: sa.Row[Any]
    currency: money.Currency
    tz: str
    proration: periods.ProrationUnit
    tax_rates: tuple[taxes.TaxRate, ...]

    @classmethod
    def load(cls, conn: sa.Connection, *, tenant_id: uuid.UUID, customer_id: uuid.UUID) -> Billing:
        return cls.load_many(conn, tenant_id=tenant_id, customer_ids=[customer_id])[customer_id]

    @classmethod
    def load_many(
        cls, conn: sa.Connection, *, tenant_id: uuid.UUID, customer_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Billing]:
        """What billing needs of each of these customers, in three statements."""
        tenant = tenant_store.get(conn, tenant_id)
        rows = customer_store.get_many(conn, tenant_id=tenant_id, customer_ids=sorted(set(customer_ids)))
        if tenant is None or len(rows) != len(set(customer_ids)):
            raise LookupError(f"customers of tenant {tenant_id} are gone")
        codes = sorted({code for row in rows.values() for code in row.tax_rates})
        rates = {
            code: TaxRateView.of(row).tax_rate
            for code, row in catalog_store.get_rows(
                conn, catalog_store.TAX_RATES, tenant_id=tenant_id, codes=codes
            ).items()
        }
        return {
            customer_id: cls(
                tenant=tenant,
                customer=customer,
                currency=money.currency(customer.currency),
                tz=customer.timezone or tenant.timezone,
                proration=periods.ProrationUnit(tenant.proration),
                tax_rates=tuple(rates[code] for code in customer.tax_rates if code in rates),
            )
            for customer_id, customer in rows.items()
        }

    @property
    def grace_period_days(self) -> int:
        days: int | None = self.customer.grace_period_days
        return self.tenant.grace_period_days if days is None else days

    @property
    def payment_terms_days(self) -> int:
        days: int | None = self.customer.payment_terms_days
        return self.tenant.payment_terms_days if days is None else days


@dataclasses.dataclass(frozen=True)
class VersionCharges:
    """A plan version's code and charges, as billing rates them."""

    plan_code: str
    charges: tuple[pricing.ChargeDefinition, ...]


def versions_of(
    conn: sa.Connection, tenant_id: uuid.UUID, version_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, VersionCharges]:
    """These plan versions' codes and charges, by id (published ones from the cache)."""
    found = catalog_store.versions_by_id(conn, tenant_id=tenant_id, version_ids=list(version_ids))
    return {
        version_id: VersionCharges(
            plan_code=v.plan_code,
            charges=tuple(pricing.parse_charge(c.spec, pointer="") for c in v.version.charges),
        )
        for version_id, v in found.items()
    }


def _window_share(billing: Billing, window: Period, period: Period) -> Fraction:
    """The share of its period a usage window is, for prorating a minimum or a cap."""
    if window == period:
        return Fraction(1)
    share = periods.proration_fraction(window, period, unit=billing.proration, tz=billing.tz)
    if share == 0:
        # Less than a local day: by its duration, so a minimum still scales with it.
        share = periods.proration_fraction(window, period, unit=periods.ProrationUnit.SECOND, tz=billing.tz)
    return share


def _group_text(group: str) -> str:
    values = json.loads(group)
    return ", ".join(str(v) for v in values if v is not None)


def _rating_details(rating: pricing.Rating, *, period: Period) -> dict[str, Any]:
    return {
        "period": _period_json(period),
        "parts": [
            {
                "description": part.description,
                "quantity": format(part.quantity, "f"),
                "unit_amount": None if part.unit_amount is None else format(part.unit_amount, "f"),
                "amount": format(part.amount, "f"),
            }
            for part in rating.lines
        ],
        "capped": rating.capped,
    }


@dataclasses.dataclass(frozen=True)
class UsageToRate:
    """A usage window of one subscription's plan version, to rate for an invoice."""

    subscription: sa.Row[Any]
    billing: Billing
    plan_version_id: uuid.UUID
    window: Period
    period: Period


def rate_usage(conn: sa.Connection, items: Sequence[UsageToRate]) -> list[list[reads.Rated]]:
    """Rate the metered charges of each window, all of one tenant, in a few statements."""
    if not items:
        return []
    tenant_id = items[0].subscription.tenant_id
    versions = versions_of(conn, tenant_id, sorted({item.plan_version_id for item in items}))
    codes = sorted({c.meter for v in versions.values() for c in v.charges if c.meter is not None})
    meter_views = reads.meters_for(conn, tenant_id=tenant_id, codes=codes)
    return reads.rate_windows(
        conn,
        tenant_id=tenant_id,
        items=[
            reads.WindowToRate(
                subscription_id=item.subscription.subscription_id,
                grid=dt.timedelta(microseconds=item.subscription.usage_grid_offset_us),
                charges=versions[item.plan_version_id].charges,
                currency=item.billing.currency,
                window=item.window,
                period=item.period,
                since=item.subscription.start_at,
                proration=_window_share(item.billing, item.window, item.period),
            )
            for item in items
        ],
        meters=meter_views,
        watermark=usage_rollups.watermark(conn, tenant_id=tenant_id),
    )


def usage_items(
    subscription: sa.Row[Any], billing: Billing, usage: Sequence[Mapping[str, Any]]
) -> list[UsageToRate]:
    """A billing point's usage windows, to rate."""
    return [
        UsageToRate(
            subscription=subscription,
            billing=billing,
            plan_version_id=uuid.UUID(raw["plan_version_id"]),
            window=_period_of(raw["window"]),
            period=_period_of(raw["period"]),
        )
        for raw in usage
    ]


def usage_lines(conn: sa.Connection, items: Sequence[UsageToRate]) -> list[list[DraftLine]]:
    """The usage (and minimum) lines of each window, rated now."""
    if not items:
        return []
    versions = versions_of(conn, items[0].subscription.tenant_id, sorted({i.plan_version_id for i in items}))
    found = []
    for item, rated in zip(items, rate_usage(conn, items), strict=True):
        version = versions[item.plan_version_id]
        lines: list[DraftLine] = []
        for r in rated:
            lines += _usage_lines(
                r,
                plan=version.plan_code,
                plan_version_id=item.plan_version_id,
                window=item.window,
                period=item.period,
                currency=item.billing.currency,
            )
        found.append(lines)
    return found


def point_usage_lines(
    conn: sa.Connection, billing: Billing, *, subscription: sa.Row[Any], usage: Sequence[Mapping[str, Any]]
) -> list[DraftLine]:
    """The usage (and minimum) lines of one billing point's usage windows, rated now."""
    return [line for lines in usage_lines(conn, usage_items(subscription, billing, usage)) for line in lines]


def _usage_lines(
    rated: reads.Rated,
    *,
    plan: str,
    plan_version_id: uuid.UUID,
    window: Period,
    period: Period,
    currency: money.Currency,
) -> list[DraftLine]:
    rating = rated.rating
    group = _group_text(rated.group)
    source = {
        "plan_version_id": plan_version_id,
        "meter_id": rated.meter_id,
        "usage_group": rated.group,
        "window": window,
    }
    description = rating.description + (f" ({group})" if group else "")
    lines = [
        DraftLine(
            kind=LineKind.USAGE,
            charge=rated.charge.code,
            description=description,
            period=window,
            quantity=money.round_quantity(rated.quantity),
            unit_amount=rating.unit_amount,
            amount=rating.amount,
            plan=plan,
            source=source,
            details=_rating_details(rating, period=period),
        )
    ]
    if rating.minimum_true_up > 0:
        floor = rating.amount + rating.minimum_true_up
        lines.append(
            DraftLine(
                kind=LineKind.MINIMUM,
                charge=rated.charge.code,
                description=(
                    f"minimum spend of {money.Money.from_decimal(floor, currency).format()} "
                    f"{currency.code} for {rated.charge.name}" + (f" ({group})" if group else "")
                ),
                period=window,
                quantity=Decimal(1),
                unit_amount=None,
                amount=rating.minimum_true_up,
                plan=plan,
                source=source,
                details={"period": _period_json(period), "minimum_spend": format(floor, "f")},
            )
        )
    return lines


@dataclasses.dataclass(frozen=True)
class _Billed:
    """What was billed for one charge and group over one usage window, over all invoices."""

    plan_version_id: uuid.UUID
    charge: str
    meter_id: uuid.UUID
    group: str
    window: Period
    period: Period
    quantity: Decimal = Decimal(0)
    amount: int = 0


def late_usage_lines(
    conn: sa.Connection, billing: Billing, *, subscription: sa.Row[Any], invoice_id: uuid.UUID
) -> list[DraftLine]:
    """Claim the subscription's unbilled late events for `invoice_id` and bill their effect."""
    claimed = store.claim_late_usage(
        conn,
        tenant_id=subscription.tenant_id,
        subscription_id=subscription.subscription_id,
        invoice_id=invoice_id,
    )
    return late_usage_lines_of(conn, billing, subscription=subscription, claimed=claimed)


def late_usage_lines_of(
    conn: sa.Connection, billing: Billing, *, subscription: sa.Row[Any], claimed: Sequence[sa.Row[Any]]
) -> list[DraftLine]:
    """Bill the effect of late events claimed for an invoice of the subscription.

    Every usage window of a finalized invoice that a late event falls in (and, for a
    time-weighted sum, every later one, whose running total it changes) is rated again, every
    group of it, and a late-usage line bills the difference from what finalized invoices billed
    for that charge, group and window so far (nothing, for a group new to it), so tiered prices
    stay exact. Drafts do not count: they rate their windows afresh when they finalize.
    """
    if not claimed:
        return []
    meter_ids = sorted({row.meter_id for row in claimed})
    billed: dict[tuple[str, str, dt.datetime, dt.datetime], _Billed] = {}
    windows: dict[tuple[str, dt.datetime, dt.datetime], _Billed] = {}
    for line in store.billed_usage_lines(
        conn,
        tenant_id=subscription.tenant_id,
        subscription_id=subscription.subscription_id,
        meter_ids=meter_ids,
    ):
        window = Period(line.window_start, line.window_end)
        key = (line.charge, line.usage_group, window.start, window.end)
        found = billed.get(key) or _Billed(
            plan_version_id=line.plan_version_id,
            charge=line.charge,
            meter_id=line.meter_id,
            group=line.usage_group,
            window=window,
            period=_period_of(line.details["period"]),
        )
        counted = Decimal(line.quantity) if line.kind in (LineKind.USAGE, LineKind.LATE_USAGE) else Decimal(0)
        billed[key] = dataclasses.replace(
            found, quantity=found.quantity + counted, amount=found.amount + line.amount
        )
        windows.setdefault((line.charge, window.start, window.end), billed[key])
    weighted = {
        row.meter_id
        for row in conn.execute(
            sa.select(catalog_store.METERS.table).where(
                catalog_store.METERS.table.c.tenant_id == subscription.tenant_id,
                catalog_store.METERS.table.c.meter_id.in_(meter_ids),
            )
        )
        if MeterView.of(row).definition.aggregation is meters.Aggregation.WEIGHTED_SUM
    }
    affected = sorted(
        {
            key
            for key, item in windows.items()
            for event in claimed
            if event.meter_id == item.meter_id
            and (
                item.window.start <= event.ts < item.window.end
                or (event.meter_id in weighted and event.ts < item.window.start)
            )
        },
        key=lambda k: (k[1], k[0]),
    )
    versions = versions_of(conn, subscription.tenant_id, [windows[key].plan_version_id for key in affected])
    items = [
        UsageToRate(
            subscription, billing, windows[key].plan_version_id, windows[key].window, windows[key].period
        )
        for key in affected
    ]
    lines: list[DraftLine] = []
    for window_key, rated_window in zip(affected, rate_usage(conn, items), strict=True):
        charge, start, end = window_key
        for rated in rated_window:
            if rated.charge.code != charge:
                continue
            item = billed.get((charge, rated.group, start, end)) or dataclasses.replace(
                windows[window_key], group=rated.group, quantity=Decimal(0), amount=0
            )
            late = _late_line(
                rated, item, plan=versions[item.plan_version_id].plan_code, currency=billing.currency
            )
            if late is not None:
                lines.append(late)
    return lines


def _late_line(rated: reads.Rated, item: _Billed, *, plan: str, currency: money.Currency) -> DraftLine | None:
    """What a window's charge and group owes now beyond what was billed for it."""
    now_amount = rated.rating.amount + rated.rating.minimum_true_up
    delta = now_amount - money.Money(minor=item.amount, currency=currency).amount
    quantity = money.round_quantity(rated.quantity) - item.quantity
    if delta == 0 and quantity == 0:
        return None
    group = _group_text(item.group)
    return DraftLine(
        kind=LineKind.LATE_USAGE,
        charge=item.charge,
        description=(
            f"late usage for {item.window.start.date().isoformat()} to "
            f"{item.window.end.date().isoformat()}: {money.format_quantity(quantity)} more; "
            f"{rated.rating.description} in all" + (f" ({group})" if group else "")
        ),
        period=item.window,
        quantity=quantity,
        unit_amount=rated.rating.unit_amount,
        amount=delta,
        plan=plan,
        source={
            "plan_version_id": item.plan_version_id,
            "meter_id": item.meter_id,
            "usage_group": item.group,
            "window": item.window,
        },
        details=_rating_details(rated.rating, period=item.period)
        | {"billed_before": format(now_amount - delta, "f")},
    )


def fee_lines(point: sa.Row[Any], versions: Mapping[uuid.UUID, VersionCharges]) -> list[DraftLine]:
    """The flat-fee lines the lifecycle computed at the billing point."""
    return [
        DraftLine(
            kind=LineKind(raw["kind"]),
            charge=raw["charge"],
            description=raw["description"],
            period=_period_of(raw["period"]),
            quantity=Decimal(raw["quantity"]),
            unit_amount=Decimal(raw["unit_amount"]),
            amount=Decimal(raw["amount"]),
            plan=versions[uuid.UUID(raw["plan_version_id"])].plan_code,
            source={"plan_version_id": uuid.UUID(raw["plan_version_id"])},
        )
        for raw in point.fee_lines
    ]


def stored_fixed_lines(
    conn: sa.Connection, rows: Sequence[sa.Row[Any]], *, tenant_id: uuid.UUID, currency: money.Currency
) -> list[DraftLine]:
    """A draft's lines that composing again keeps: fees, prorations and one-off lines."""
    kept = [r for r in rows if r.kind in (LineKind.FEE, LineKind.PRORATION, LineKind.ONE_OFF)]
    versions = versions_of(conn, tenant_id, sorted({r.plan_version_id for r in kept if r.plan_version_id}))
    return [
        DraftLine(
            kind=LineKind(r.kind),
            charge=r.charge,
            description=r.description,
            period=Period(r.period_start, r.period_end) if r.period_start else None,
            quantity=Decimal(r.quantity),
            unit_amount=None if r.unit_amount is None else Decimal(r.unit_amount),
            amount=money.Money(minor=r.amount, currency=currency).amount,
            plan=versions[r.plan_version_id].plan_code if r.plan_version_id else None,
            source={"plan_version_id": r.plan_version_id} if r.plan_version_id else {},
            details=dict(r.details),
        )
        for r in kept
    ]


def coupon_for(
    conn: sa.Connection, *, invoice: sa.Row[Any], subscription: sa.Row[Any] | None
) -> tuple[uuid.UUID, discounts.Coupon] | None:
    """The subscription's coupon, if it still discounts this invoice: its duration counts the
    billing periods (by their end) that invoices issued before this one discounted."""
    if subscription is None or subscription.coupon_id is None:
        return None
    row = conn.execute(
        sa.select(coupons_table).where(
            coupons_table.c.tenant_id == subscription.tenant_id,
            coupons_table.c.coupon_id == subscription.coupon_id,
        )
    ).one()
    coupon = CouponView.of(row).coupon
    found = store.coupon_periods(
        conn, tenant_id=subscription.tenant_id, subscription_ids=[subscription.subscription_id]
    ).get((subscription.subscription_id, subscription.coupon_id), [])
    earlier = {
        period_end
        for period_end, created_at, invoice_id in found
        if (created_at, invoice_id) < (invoice.created_at, invoice.invoice_id)
    }
    if not coupon.discounts_period(periods_applied=len(earlier - {invoice.period_end})):
        return None
    return subscription.coupon_id, coupon


def _line_row(
    tenant_id: uuid.UUID,
    invoice_id: uuid.UUID,
    line_no: int,
    composed: invoices.ComposedLine,
    currency: money.Currency,
) -> dict[str, Any]:
    line = composed.line
    window = line.source.get("window")
    return {
        "tenant_id": tenant_id,
        "invoice_id": invoice_id,
        "line_no": line_no,
        "kind": line.kind.value,
        "charge": line.charge,
        "description": line.description,
        "period_start": line.period.start if line.period else None,
        "period_end": line.period.end if line.period else None,
        "quantity": line.quantity,
        "unit_amount": line.unit_amount,
        "amount": money.to_minor_units(line.amount, currency),
        "discount": money.to_minor_units(composed.discount, currency),
        "tax": money.to_minor_units(composed.tax, currency),
        "taxes": [
            {
                "code": t.code,
                "name": t.name,
                "rate": format(t.rate, "f"),
                "inclusive": t.inclusive,
                "amount": format(t.amount, "f"),
            }
            for t in composed.taxes
        ],
        "plan_version_id": line.source.get("plan_version_id"),
        "meter_id": line.source.get("meter_id"),
        "usage_group": line.source.get("usage_group"),
        "window_start": window.start if window else None,
        "window_end": window.end if window else None,
        "details": dict(line.details),
    }


def composition_rows(
    *, tenant_id: uuid.UUID, compositions: Sequence[tuple[uuid.UUID, invoices.Composition]]
) -> list[list[dict[str, Any]]]:
    """The line rows of many composed drafts, by draft, to insert in one statement."""
    return [
        [
            _line_row(tenant_id, invoice_id, i + 1, composed, composition.currency)
            for i, composed in enumerate(composition.lines)
        ]
        for invoice_id, composition in compositions
    ]


def write_composition(
    uow: UnitOfWork,
    invoice: sa.Row[Any],
    lines: Sequence[DraftLine],
    billing: Billing,
    *,
    coupon: tuple[uuid.UUID, discounts.Coupon] | None,
) -> invoices.Composition:
    """Discount and tax `lines`, and store them as the draft's lines with its totals."""
    currency = billing.currency
    composition = invoices.compose(
        lines, currency=currency, coupon=coupon[1] if coupon else None, tax_rates=billing.tax_rates
    )
    store.delete_lines(uow.conn, tenant_id=uow.tenant_id, invoice_id=invoice.invoice_id)
    store.insert_lines(
        uow.conn,
        [
            _line_row(uow.tenant_id, invoice.invoice_id, i + 1, composed, currency)
            for i, composed in enumerate(composition.lines)
        ],
    )

    def minor(amount: Decimal) -> int:
        return money.to_minor_units(amount, currency)

    # Until it is finalized no credit balance is used; a credit invoice owes the customer.
    settled = invoices.settle(total=composition.total, balance=Decimal(0))
    store.update(
        uow.conn,
        tenant_id=uow.tenant_id,
        invoice_id=invoice.invoice_id,
        values={
            "subtotal": minor(composition.subtotal),
            "discount": minor(composition.discount),
            "tax": minor(composition.tax),
            "total": minor(composition.total),
            "credit_applied": minor(settled.credit_applied),
            "amount_due": minor(settled.amount_due),
            "coupon_id": coupon[0] if coupon and composition.coupon_applied else None,
            "updated_at": uow.now,
        },
    )
    return composition
