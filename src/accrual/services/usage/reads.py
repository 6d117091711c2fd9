"""Reading usage: quantities over windows, current usage of a subscription, events, quarantine."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

import sqlalchemy as sa

from accrual.domain import meters as meter_rules
from accrual.domain import money, pricing, usage
from accrual.domain.periods import Period
from accrual.services import subscriptions as subscription_service
from accrual.services.catalog.common import MeterView
from accrual.store import catalog as catalog_store
from accrual.store import usage_rollups as rollups
from accrual.store.database import Database


def _label(sql_key: str) -> str:
    """The canonical group label of a key as PostgreSQL spells it."""
    return usage.group_label(json.loads(sql_key, parse_float=Decimal))


def _merged(found: dict[str, list[usage.Partial]]) -> dict[str, usage.Partial]:
    merged: dict[str, usage.Partial] = {}
    for key, items in found.items():
        label = _label(key)
        combined = usage.combine_all(items)
        merged[label] = merged[label].combine(combined) if label in merged else combined
    return merged


@dataclasses.dataclass(frozen=True)
class WindowToRate:
    """One subscription's metered charges to rate over `window`, a part of its billing `period`.

    `since` is when the subscription's usage begins (a time-weighted sum's running total counts
    every earlier event); `grid` is where its hourly rollup buckets start; `proration` scales
    minimums and caps for a partial window.
    """

    subscription_id: uuid.UUID
    grid: dt.timedelta
    charges: Sequence[pricing.ChargeDefinition]
    currency: money.Currency
    window: Period
    period: Period
    since: dt.datetime
    proration: Fraction = Fraction(1)


@dataclasses.dataclass(frozen=True)
class Rated:
    charge: pricing.ChargeDefinition
    meter_id: uuid.UUID
    group: str
    quantity: Fraction  # exact (a time-weighted sum may not be a finite decimal)
    rating: pricing.Rating


class _Requests:
    """Reads of many windows, deduplicated, to run in a few statements."""

    def __init__(self) -> None:
        self.parts: list[rollups.PartsRequest] = []
        self.values: list[rollups.PartsRequest] = []
        self._index: dict[tuple[str, rollups.PartsRequest], int] = {}

    def add(self, kind: str, request: rollups.PartsRequest) -> int:
        key = (kind, request)
        if key not in self._index:
            bucket = self.parts if kind == "parts" else self.values
            self._index[key] = len(bucket)
            bucket.append(request)
        return self._index[key]


def _quantities(
    meter: MeterView,
    inside: dict[str, usage.Partial],
    opening: dict[str, usage.Partial],
    *,
    window: Period,
    period: Period,
) -> dict[str, Fraction]:
    definition = meter.definition
    labels = set(inside) | set(opening)
    found = {
        label: usage.quantity(
            definition,
            inside.get(label, usage.Partial()),
            window=window,
            period=period,
            opening=opening[label].total if label in opening else Decimal(0),
        )
        for label in labels
    }
    if found:
        return found
    # No event at all: one line at quantity 0 (for the empty group when it groups).
    empty = usage.group_label([None] * len(definition.group_by)) if definition.group_by else "[]"
    return {empty: Fraction(0)}


def rate_windows(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    items: Sequence[WindowToRate],
    meters: Mapping[str, MeterView],
    watermark: int,
) -> list[list[Rated]]:
    """Rate every metered charge of each item over its window, one rating per charge and group
    (groups rate alone), reading all of them in a few statements; `conn` must be a snapshot
    (or hold the subscriptions' locks)."""
    requests = _Requests()
    plans: list[list[tuple[pricing.ChargeDefinition, MeterView, int, int | None]]] = []
    for item in items:
        planned: list[tuple[pricing.ChargeDefinition, MeterView, int, int | None]] = []
        for charge in item.charges:
            if charge.meter is None:
                continue
            meter = meters[charge.meter]

            def ask(
                kind: str,
                start: dt.datetime,
                end: dt.datetime,
                item: WindowToRate = item,
                meter: MeterView = meter,
            ) -> int:
                request = rollups.PartsRequest(item.subscription_id, meter.meter_id, start, end, item.grid)
                return requests.add(kind, request)

            if isinstance(charge.model, pricing.Percentage):
                planned.append((charge, meter, ask("values", item.window.start, item.window.end), None))
                continue
            opening = None
            weighted = meter.definition.aggregation is meter_rules.Aggregation.WEIGHTED_SUM
            if weighted and item.since < item.window.start:
                opening = ask("parts", item.since, item.window.start)
            planned.append((charge, meter, ask("parts", item.window.start, item.window.end), opening))
        plans.append(planned)
    unique = any(m.definition.aggregation is meter_rules.Aggregation.UNIQUE_COUNT for m in meters.values())
    parts = rollups.parts_of_many(
        conn, tenant_id=tenant_id, requests=requests.parts, watermark=watermark, unique=unique
    )
    values = rollups.values_of_many(conn, tenant_id=tenant_id, requests=requests.values)
    merged = [_merged(found) for found in parts]
    rated_items: list[list[Rated]] = []
    for item, planned in zip(items, plans, strict=True):
        rated: list[Rated] = []
        for charge, meter, index, opening in planned:
            if isinstance(charge.model, pricing.Percentage):
                amounts = values[index]
                rating = pricing.rate_events(
                    charge.model,
                    amounts=amounts,
                    currency=item.currency,
                    unit_label="transactions",
                    minimum=charge.minimum,
                    maximum=charge.maximum,
                    proration=item.proration,
                )
                total = Fraction(sum(amounts, Decimal(0)))
                rated.append(Rated(charge, meter.meter_id, usage.group_label([]), total, rating))
                continue
            quantities = _quantities(
                meter,
                merged[index],
                merged[opening] if opening is not None else {},
                window=item.window,
                period=item.period,
            )
            for group, quantity in sorted(quantities.items()):
                rating = pricing.rate(
                    charge.model,
                    quantity=quantity,
                    currency=item.currency,
                    unit_label=meter.definition.name,
                    minimum=charge.minimum,
                    maximum=charge.maximum,
                    proration=item.proration,
                )
                rated.append(Rated(charge, meter.meter_id, group, quantity, rating))
        rated_items.append(rated)
    return rated_items


def window_quantities(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    meter: MeterView,
    window: Period,
    period: Period,
    since: dt.datetime,
) -> dict[str, Fraction]:
    """The meter's quantity over `window` per group label, exactly; `conn` must be a snapshot."""
    watermark, grid = rollups.read_position(conn, tenant_id=tenant_id, subscription_id=subscription_id)
    requests = [rollups.PartsRequest(subscription_id, meter.meter_id, window.start, window.end, grid)]
    weighted = meter.definition.aggregation is meter_rules.Aggregation.WEIGHTED_SUM
    if weighted and since < window.start:
        requests.append(rollups.PartsRequest(subscription_id, meter.meter_id, since, window.start, grid))
    unique = meter.definition.aggregation is meter_rules.Aggregation.UNIQUE_COUNT
    found = rollups.parts_of_many(
        conn, tenant_id=tenant_id, requests=requests, watermark=watermark, unique=unique
    )
    inside = _merged(found[0])
    opening = _merged(found[1]) if len(found) > 1 else {}
    quantities = _quantities(meter, inside, opening, window=window, period=period)
    return {label: q for label, q in quantities.items() if label in inside or label in opening}


@dataclasses.dataclass(frozen=True)
class ChargeUsage:
    charge: str
    meter: str
    group: str
    quantity: Fraction
    amount: Decimal
    unit_amount: Decimal | None
    description: str


@dataclasses.dataclass(frozen=True)
class CurrentUsage:
    subscription_id: uuid.UUID
    period: Period | None
    window: Period | None
    as_of: dt.datetime
    currency: str
    charges: list[ChargeUsage]

    @property
    def amount(self) -> Decimal:
        return sum((c.amount for c in self.charges), Decimal(0))


def meters_for(conn: sa.Connection, *, tenant_id: uuid.UUID, codes: Sequence[str]) -> dict[str, MeterView]:
    rows = catalog_store.get_rows(conn, catalog_store.METERS, tenant_id=tenant_id, codes=sorted(set(codes)))
    return {code: MeterView.of(row) for code, row in rows.items()}


def current_usage(
    db: Database, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, now: dt.datetime
) -> CurrentUsage:
    """Usage of the subscription's open period so far, per metered charge, exactly, as of now
    (the customer's clock): fresh to the last committed event."""
    with db.snapshot() as conn:
        # Read on the snapshot itself: a savepoint would cost two more round trips.
        view = subscription_service.subscription_on(
            conn, tenant_id=tenant_id, subscription_id=subscription_id
        )
        at = subscription_service.effective_now(
            conn, tenant_id=tenant_id, test_clock_id=view.test_clock_id, now=now
        )
        terms = subscription_service.load_terms(conn, tenant_id, [view.plan_version_id])[view.plan_version_id]
        version = catalog_store.versions_by_id(conn, tenant_id=tenant_id, version_ids=[view.plan_version_id])[
            view.plan_version_id
        ]
        charges = [pricing.parse_charge(c.spec, pointer="") for c in version.version.charges]
        if view.current_period is None:
            return CurrentUsage(subscription_id, None, None, at, terms.currency.code, [])
        period = view.current_period
        window = Period(view.usage_since or period.start, period.end)
        meters = meters_for(conn, tenant_id=tenant_id, codes=[c.meter for c in charges if c.meter])
        watermark, grid = rollups.read_position(conn, tenant_id=tenant_id, subscription_id=subscription_id)
        (rated,) = rate_windows(
            conn,
            tenant_id=tenant_id,
            items=[
                WindowToRate(
                    subscription_id=subscription_id,
                    grid=grid,
                    charges=charges,
                    currency=terms.currency,
                    window=window,
                    period=period,
                    since=view.start,
                )
            ],
            meters=meters,
            watermark=watermark,
        )
    return CurrentUsage(
        subscription_id=subscription_id,
        period=period,
        window=window,
        as_of=at,
        currency=terms.currency.code,
        charges=[
            ChargeUsage(
                charge=r.charge.code,
                meter=r.charge.meter or "",
                group=r.group,
                quantity=r.quantity,
                amount=r.rating.amount,
                unit_amount=r.rating.unit_amount,
                description=r.rating.description,
            )
            for r in rated
        ],
    )


@dataclasses.dataclass(frozen=True)
class StoredEvent:
    event_id: str
    subscription_id: uuid.UUID
    meter: str
    ts: dt.datetime
    properties: dict[str, object]
    received_at: dt.datetime
    late: bool


_LIST_EVENTS = (
    "select e.event_id, e.subscription_id, m.code as meter, e.ts, e.properties, e.received_at, e.late "
    "from usage_events e join meters m on m.tenant_id = e.tenant_id and m.meter_id = e.meter_id "
    "join subscriptions s on s.tenant_id = e.tenant_id and s.subscription_id = e.subscription_id "
    "where {where} order by e.ts desc, e.event_id desc limit :limit"
)


def list_events(
    db: Database,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID | None,
    customer_id: uuid.UUID | None,
    meter: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    cursor: tuple[dt.datetime, str] | None,
    limit: int,
    late: bool | None = None,
) -> tuple[list[StoredEvent], tuple[dt.datetime, str] | None]:
    """Counted events, newest first (by timestamp), with a (timestamp, id) cursor; `late` keeps
    only the late ones (True) or those on time (False)."""
    conditions = ["e.tenant_id = :t"]
    params: dict[str, object] = {"t": tenant_id, "limit": limit + 1}
    for column, value in (
        ("e.subscription_id", subscription_id),
        ("s.customer_id", customer_id),
        ("m.code", meter),
        ("e.late", late),
    ):
        if value is not None:
            key = column.replace(".", "_")
            conditions.append(f"{column} = :{key}")
            params[key] = value
    if start is not None:
        conditions.append("e.ts >= :start")
        params["start"] = start
    if end is not None:
        conditions.append("e.ts < :end")
        params["end"] = end
    if cursor is not None:
        conditions.append("(e.ts, e.event_id) < (:cts, :cid)")
        params |= {"cts": cursor[0], "cid": cursor[1]}
    with db.snapshot() as conn:
        where = " and ".join(conditions)  # fixed clauses; every value is a bound parameter
        rows = conn.execute(sa.text(_LIST_EVENTS.format(where=where)), params).all()
    items = [
        StoredEvent(r.event_id, r.subscription_id, r.meter, r.ts, dict(r.properties), r.received_at, r.late)
        for r in rows[:limit]
    ]
    more = (items[-1].ts, items[-1].event_id) if len(rows) > limit and items else None
    return items, more


@dataclasses.dataclass(frozen=True)
class HeldEvent:
    event_id: str
    meter: str
    subscription_ref: str | None
    customer_ref: str | None
    ts: dt.datetime
    properties: dict[str, object]
    reason: str
    detail: str
    received_at: dt.datetime
    released_at: dt.datetime | None
    released_to: uuid.UUID | None


def list_quarantine(
    db: Database,
    *,
    tenant_id: uuid.UUID,
    include_released: bool,
    reason: str | None,
    cursor: tuple[dt.datetime, str] | None,
    limit: int,
) -> tuple[list[HeldEvent], tuple[dt.datetime, str] | None]:
    """Quarantined events (held, or also released), oldest first, with each one's reason."""
    conditions = ["tenant_id = :t"]
    params: dict[str, object] = {"t": tenant_id, "limit": limit + 1}
    if not include_released:
        conditions.append("released_at is null")
    if reason is not None:
        conditions.append("reason = :reason")
        params["reason"] = reason
    if cursor is not None:
        conditions.append("(received_at, event_id) > (:cts, :cid)")
        params |= {"cts": cursor[0], "cid": cursor[1]}
    with db.snapshot() as conn:
        rows = conn.execute(
            sa.text(
                f"select * from usage_quarantine where {' and '.join(conditions)} "  # noqa: S608 - fixed clauses
                "order by received_at, event_id limit :limit"
            ),
            params,
        ).all()
    items = [
        HeldEvent(
            r.event_id,
            r.meter,
            r.subscription_ref,
            r.customer_ref,
            r.ts,
            dict(r.properties),
            r.reason,
            r.detail,
            r.received_at,
            r.released_at,
            r.released_to,
        )
        for r in rows[:limit]
    ]
    more = (items[-1].received_at, items[-1].event_id) if len(rows) > limit and items else None
    return items, more
