"""Exact aggregation of usage: how a meter turns events into a quantity over a window.

Aggregates are built from `Partial`s, each summing some of a window's events (an hourly
rollup, a raw edge, the fresh tail); partials combine associatively, so any split of the
events gives the same quantity. Everything is exact: decimals and fractions, no floats, no
sketches (`unique_count` keeps the distinct values themselves).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from accrual.domain.meters import Aggregation, MeterDefinition
from accrual.domain.periods import Period

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def epoch_micros(instant: dt.datetime) -> int:
    """Microseconds since 1970, exactly."""
    return (instant - _EPOCH) // dt.timedelta(microseconds=1)


_HOUR_US = 3_600_000_000
_MICRO = dt.timedelta(microseconds=1)


def bucket_start(instant: dt.datetime, offset: dt.timedelta) -> dt.datetime:
    """The start of the hourly usage bucket holding `instant`, on a grid of hours that begin
    `offset` into each UTC hour (a subscription's grid: where its billing boundaries fall)."""
    utc = instant.astimezone(dt.UTC)  # arithmetic on a zone's wall clock would be wrong across DST
    into = (epoch_micros(utc) - offset // _MICRO) % _HOUR_US
    return utc - into * _MICRO


def bucket_end_at_or_after(instant: dt.datetime, offset: dt.timedelta) -> dt.datetime:
    """The first bucket boundary at or after `instant` on the same grid."""
    down = bucket_start(instant, offset)
    return down if down == instant else down + _HOUR_US * _MICRO


@dataclasses.dataclass(frozen=True)
class Partial:
    """The aggregate of some events of one group: enough to combine with any other part.

    `weighted` is the sum of value × (epoch microseconds of its timestamp), which with `total`
    gives the time integral of the running total over any window the events lie in.
    """

    events: int = 0
    total: Decimal = Decimal(0)
    maximum: Decimal | None = None
    latest: tuple[dt.datetime, str, Decimal | None] | None = None  # (ts, event id, value)
    weighted: Decimal = Decimal(0)
    distinct: frozenset[str] = frozenset()

    def combine(self, other: Partial) -> Partial:
        maximum = self.maximum
        if other.maximum is not None and (maximum is None or other.maximum > maximum):
            maximum = other.maximum
        latest = self.latest
        if other.latest is not None and (latest is None or other.latest[:2] > latest[:2]):
            latest = other.latest
        return Partial(
            events=self.events + other.events,
            total=self.total + other.total,
            maximum=maximum,
            latest=latest,
            weighted=self.weighted + other.weighted,
            distinct=self.distinct | other.distinct,
        )


def combine_all(parts: Iterable[Partial]) -> Partial:
    result = Partial()
    for part in parts:
        result = result.combine(part)
    return result


def merge_groups(*groups: Mapping[str, Partial]) -> dict[str, Partial]:
    merged: dict[str, Partial] = {}
    for group in groups:
        for key, part in group.items():
            merged[key] = merged[key].combine(part) if key in merged else part
    return merged


def quantity(
    meter: MeterDefinition, partial: Partial, *, window: Period, period: Period, opening: Decimal = Decimal(0)
) -> Fraction:
    """The meter's quantity over `window` from the aggregate of the window's events.

    `period` is the billing period the window belongs to: a time-weighted sum integrates the
    running total over the window and divides by the period's length. `opening` is the
    running total before the window (the sum of every earlier event's value).
    """
    aggregation = meter.aggregation
    if aggregation is Aggregation.COUNT:
        return Fraction(partial.events)
    if aggregation is Aggregation.SUM:
        return Fraction(partial.total)
    if aggregation is Aggregation.MAX:
        return Fraction(partial.maximum) if partial.maximum is not None else Fraction(0)
    if aggregation is Aggregation.LATEST:
        return (
            Fraction(partial.latest[2]) if partial.latest and partial.latest[2] is not None else Fraction(0)
        )
    if aggregation is Aggregation.UNIQUE_COUNT:
        return Fraction(len(partial.distinct))
    # weighted_sum: ∫ running total dt over the window = opening × |window| + Σ value × (end − ts).
    end = epoch_micros(window.end)
    integral = Fraction(opening) * (end - epoch_micros(window.start)) + Fraction(partial.total) * end
    integral -= Fraction(partial.weighted)
    return integral / epoch_micros_span(period)


def epoch_micros_span(period: Period) -> int:
    return epoch_micros(period.end) - epoch_micros(period.start)


def group_label(values: Iterable[Any]) -> str:
    """The canonical label of a group: its group-by values as compact JSON (`[]` without any)."""
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False, sort_keys=True, default=str)


def group_key(meter: MeterDefinition, properties: Mapping[str, Any]) -> str:
    """The group an event falls in."""
    return group_label(properties.get(g) for g in meter.group_by)


def matches(meter: MeterDefinition, properties: Mapping[str, Any]) -> bool:
    """Whether the meter's filters keep an event (every filtered property has an allowed value)."""
    for prop, allowed in meter.filters:
        value = properties.get(prop)
        if value is None or _text(value) not in allowed:
            return False
    return True


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def value_of(meter: MeterDefinition, properties: Mapping[str, Any]) -> Decimal | None:
    """The numeric value an event carries for the meter, or None (count meters, non-numbers)."""
    if meter.field is None:
        return None
    raw = properties.get(meter.field)
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int | Decimal):
        return Decimal(raw)
    try:
        return Decimal(str(raw))
    except ArithmeticError:
        return None


def partial_of(
    meter: MeterDefinition, *, ts: dt.datetime, event_id: str, properties: Mapping[str, Any]
) -> Partial:
    """The aggregate of one event."""
    value = value_of(meter, properties)
    distinct: frozenset[str] = frozenset()
    if meter.aggregation is Aggregation.UNIQUE_COUNT and meter.field is not None:
        raw = properties.get(meter.field)
        if raw is not None:
            distinct = frozenset({_text(raw)})
    return Partial(
        events=1,
        total=value if value is not None else Decimal(0),
        maximum=value,
        latest=(ts, event_id, value),
        weighted=(value * epoch_micros(ts)) if value is not None else Decimal(0),
        distinct=distinct,
    )


def aggregate_events(
    meter: MeterDefinition,
    events: Iterable[tuple[dt.datetime, str, Mapping[str, Any]]],
    *,
    window: Period,
    period: Period,
) -> dict[str, Fraction]:
    """The brute-force quantity per group over `window`: every event looked at once (the oracle)."""
    inside: dict[str, Partial] = {}
    opening: dict[str, Decimal] = {}
    for ts, event_id, properties in events:
        if not matches(meter, properties):
            continue
        key = group_key(meter, properties)
        if ts < window.start:
            value = value_of(meter, properties)
            opening[key] = opening.get(key, Decimal(0)) + (value or 0)
        elif ts < window.end:
            one = partial_of(meter, ts=ts, event_id=event_id, properties=properties)
            inside[key] = inside[key].combine(one) if key in inside else one
    keys = set(inside) | (set(opening) if meter.aggregation is Aggregation.WEIGHTED_SUM else set())
    return {
        key: quantity(
            meter,
            inside.get(key, Partial()),
            window=window,
            period=period,
            opening=opening.get(key, Decimal(0)),
        )
        for key in keys
    }
