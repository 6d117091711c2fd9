"""Hourly rollups of usage, kept by a worker, and reads that combine them with the raw events.

A rollup pass folds every event whose writing transaction is older than the oldest one still
running (`pg_snapshot_xmin`) into hourly buckets, then moves the tenants' watermark there:
an event committing late can never be skipped. A read takes, in one snapshot, the watermark,
the buckets wholly inside its window, and the raw events the buckets do not hold (the
partial hours at the window's edges, and the fresh tail at or above the watermark).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from accrual.domain.usage import Partial, epoch_micros

# Serializes rollup passes of several workers.
_ROLLUP_LOCK = 0x55_53_47  # "USG"

ROLLUP = """
WITH src AS (
    SELECT e.tenant_id, e.subscription_id, e.meter_id, date_trunc('hour', e.ts) AS bucket,
           accrual_usage_group(e.properties, m.group_by) AS group_key,
           accrual_usage_value(e.properties, m.field) AS value, e.ts, e.event_id,
           CASE WHEN m.aggregation = 'unique_count' THEN e.properties ->> m.field END AS uvalue
      FROM usage_events e
      JOIN meters m ON m.tenant_id = e.tenant_id AND m.meter_id = e.meter_id
     WHERE e.xact >= :lo AND e.xact < :hi AND accrual_usage_matches(e.properties, m.filters)
),
agg AS (
    SELECT tenant_id, subscription_id, meter_id, bucket, group_key, count(*) AS events,
           coalesce(sum(value), 0) AS total, max(value) AS maximum,
           (array_agg(ts ORDER BY ts DESC, event_id DESC))[1] AS latest_ts,
           (array_agg(value ORDER BY ts DESC, event_id DESC))[1] AS latest_value,
           (array_agg(event_id ORDER BY ts DESC, event_id DESC))[1] AS latest_event,
           coalesce(sum(value * (extract(epoch FROM ts) * 1000000)), 0) AS weighted
      FROM src GROUP BY tenant_id, subscription_id, meter_id, bucket, group_key
),
vals AS (
    INSERT INTO usage_rollup_values (tenant_id, subscription_id, meter_id, bucket, group_key, value)
    SELECT DISTINCT tenant_id, subscription_id, meter_id, bucket, group_key, uvalue FROM src WHERE uvalue IS NOT NULL
    ON CONFLICT DO NOTHING
)
INSERT INTO usage_rollups AS r (tenant_id, subscription_id, meter_id, bucket, group_key, events, total, maximum,
                                latest_ts, latest_value, latest_event, weighted)
SELECT * FROM agg
ON CONFLICT (tenant_id, subscription_id, meter_id, bucket, group_key) DO UPDATE SET
    events = r.events + excluded.events,
    total = r.total + excluded.total,
    maximum = greatest(r.maximum, excluded.maximum),
    latest_value = CASE WHEN (excluded.latest_ts, excluded.latest_event) > (r.latest_ts, r.latest_event)
                        THEN excluded.latest_value ELSE r.latest_value END,
    latest_event = CASE WHEN (excluded.latest_ts, excluded.latest_event) > (r.latest_ts, r.latest_event)
                        THEN excluded.latest_event ELSE r.latest_event END,
    latest_ts = greatest(r.latest_ts, excluded.latest_ts),
    weighted = r.weighted + excluded.weighted
"""


def start_tenant(conn: sa.Connection, *, tenant_id: uuid.UUID, now: dt.datetime) -> None:
    """A new tenant's watermark starts at its creating transaction: none of its events can be older."""
    conn.execute(
        sa.text(
            "insert into usage_rollup_state (tenant_id, xact_watermark, updated_at) "
            "values (:t, (pg_current_xact_id()::text)::bigint, :now) on conflict do nothing"
        ),
        {"t": tenant_id, "now": now},
    )


def roll_up(conn: sa.Connection, *, now: dt.datetime) -> tuple[int, int, int]:
    """Fold every event of finished transactions not yet rolled up; return (from, to, rows touched)."""
    conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": _ROLLUP_LOCK})
    hi = int(
        conn.execute(sa.text("select (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint")).scalar_one()
    )
    lo = conn.execute(sa.text("select min(xact_watermark) from usage_rollup_state")).scalar_one()
    if lo is None or lo >= hi:
        return (int(lo or hi), hi, 0)
    touched = conn.execute(sa.text(ROLLUP), {"lo": lo, "hi": hi}).rowcount
    conn.execute(
        sa.text(
            "update usage_rollup_state set xact_watermark = :hi, updated_at = :now where xact_watermark < :hi"
        ),
        {"hi": hi, "now": now},
    )
    return (int(lo), hi, int(touched or 0))


def watermark(conn: sa.Connection, *, tenant_id: uuid.UUID) -> int:
    value = conn.execute(
        sa.text("select xact_watermark from usage_rollup_state where tenant_id = :t"), {"t": tenant_id}
    ).scalar_one_or_none()
    return int(value) if value is not None else 0


@dataclasses.dataclass(frozen=True)
class MeterRules:
    meter_id: uuid.UUID
    aggregation: str
    field: str | None
    filters: Any
    group_by: list[str]


_RAW = """
SELECT accrual_usage_group(e.properties, cast(:group_by as text[])) AS group_key,
       accrual_usage_value(e.properties, cast(:field as text)) AS value,
       e.ts, e.event_id, e.properties ->> cast(:field as text) AS uvalue
  FROM usage_events e
 WHERE e.tenant_id = :t AND e.subscription_id = :s AND e.meter_id = :m
   AND e.ts >= :a AND e.ts < :b
   AND accrual_usage_matches(e.properties, cast(:filters as jsonb))
"""

# The fresh tail: rows at or above the watermark, found through the BRIN index on xact first
# (a materialized CTE), never by walking the whole window.
_TAIL = """
WITH recent AS MATERIALIZED (
    SELECT * FROM usage_events WHERE xact >= :w AND tenant_id = :t
)
SELECT accrual_usage_group(e.properties, cast(:group_by as text[])) AS group_key,
       accrual_usage_value(e.properties, cast(:field as text)) AS value,
       e.ts, e.event_id, e.properties ->> cast(:field as text) AS uvalue
  FROM recent e
 WHERE e.subscription_id = :s AND e.meter_id = :m AND e.ts >= :a AND e.ts < :b
   AND accrual_usage_matches(e.properties, cast(:filters as jsonb))
"""

_BUCKETS = """
SELECT group_key, sum(events) AS events, sum(total) AS total, max(maximum) AS maximum,
       (array_agg(latest_ts ORDER BY latest_ts DESC, latest_event DESC))[1] AS latest_ts,
       (array_agg(latest_event ORDER BY latest_ts DESC, latest_event DESC))[1] AS latest_event,
       (array_agg(latest_value ORDER BY latest_ts DESC, latest_event DESC))[1] AS latest_value,
       sum(weighted) AS weighted
  FROM usage_rollups
 WHERE tenant_id = :t AND subscription_id = :s AND meter_id = :m AND bucket >= :a AND bucket < :b
 GROUP BY group_key
"""

_DISTINCT = """
SELECT DISTINCT group_key, value FROM usage_rollup_values
 WHERE tenant_id = :t AND subscription_id = :s AND meter_id = :m AND bucket >= :a AND bucket < :b
"""


def _hour_up(instant: dt.datetime) -> dt.datetime:
    down = instant.replace(minute=0, second=0, microsecond=0)
    return down if down == instant else down + dt.timedelta(hours=1)


def _hour_down(instant: dt.datetime) -> dt.datetime:
    return instant.replace(minute=0, second=0, microsecond=0)


def _raw_partials(rows: Any, *, unique: bool) -> dict[str, list[Partial]]:
    parts: dict[str, list[Partial]] = {}
    for row in rows:
        value = Decimal(row.value) if row.value is not None else None
        parts.setdefault(row.group_key, []).append(
            Partial(
                events=1,
                total=value if value is not None else Decimal(0),
                maximum=value,
                latest=(row.ts, row.event_id, value),
                weighted=value * epoch_micros(row.ts) if value is not None else Decimal(0),
                distinct=frozenset({row.uvalue}) if unique and row.uvalue is not None else frozenset(),
            )
        )
    return parts


def window_parts(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    meter: MeterRules,
    start: dt.datetime,
    end: dt.datetime,
    watermark: int,
) -> dict[str, list[Partial]]:
    """The partial aggregates, per group key, of the events in `[start, end)`: buckets wholly
    inside, raw events in the partial hours at either edge, and the fresh tail."""
    params = {
        "t": tenant_id,
        "s": subscription_id,
        "m": meter.meter_id,
        "group_by": list(meter.group_by),
        "field": meter.field,
        "filters": json.dumps(meter.filters),
    }
    unique = meter.aggregation == "unique_count"
    parts: dict[str, list[Partial]] = {}

    def add(found: dict[str, list[Partial]]) -> None:
        for key, items in found.items():
            parts.setdefault(key, []).extend(items)

    full_start, full_end = _hour_up(start), _hour_down(end)
    if full_start >= full_end:
        add(_raw_partials(conn.execute(sa.text(_RAW), params | {"a": start, "b": end}), unique=unique))
        return parts
    for a, b in ((start, full_start), (full_end, end)):
        if a < b:
            add(_raw_partials(conn.execute(sa.text(_RAW), params | {"a": a, "b": b}), unique=unique))
    window = {"a": full_start, "b": full_end}
    distinct: dict[str, set[str]] = {}
    if unique:
        for row in conn.execute(sa.text(_DISTINCT), params | window):
            distinct.setdefault(row.group_key, set()).add(row.value)
    for row in conn.execute(sa.text(_BUCKETS), params | window):
        parts.setdefault(row.group_key, []).append(
            Partial(
                events=int(row.events),
                total=Decimal(row.total),
                maximum=Decimal(row.maximum) if row.maximum is not None else None,
                latest=(
                    row.latest_ts,
                    row.latest_event,
                    Decimal(row.latest_value) if row.latest_value is not None else None,
                )
                if row.latest_ts is not None
                else None,
                weighted=Decimal(row.weighted),
                distinct=frozenset(distinct.get(row.group_key, ())),
            )
        )
    add(_raw_partials(conn.execute(sa.text(_TAIL), params | window | {"w": watermark}), unique=unique))
    return parts
