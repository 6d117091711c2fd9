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

from accrual.domain.usage import Partial, bucket_end_at_or_after, bucket_start

# Serializes rollup passes of several workers.
_ROLLUP_LOCK = 0x55_53_47  # "USG"

# The pass's events are found by their transaction id alone (the BRIN index), in a materialized
# CTE: the planner cannot know how many there are (xact is always beyond its statistics), and
# given the chance it would walk every event of a tenant through the primary key, or the whole
# table. The join to meters is a hash join. `roll_up` turns nested loops and sequential scans off
# for this statement, so the cost of a pass is its events plus the meters table, never the
# table's size or a product.
ROLLUP = """
WITH ev AS MATERIALIZED (
    SELECT tenant_id, subscription_id, meter_id, bucket, ts, event_id, properties
      FROM usage_events WHERE xact >= :lo AND xact < :hi
),
src AS (
    SELECT e.tenant_id, e.subscription_id, e.meter_id, e.bucket,
           accrual_usage_group(e.properties, m.group_by) AS group_key,
           accrual_usage_value(e.properties, m.field) AS value, e.ts, e.event_id,
           CASE WHEN m.aggregation = 'unique_count' THEN e.properties ->> m.field END AS uvalue
      FROM ev e
      JOIN meters m ON m.tenant_id = e.tenant_id AND m.meter_id = e.meter_id
     WHERE accrual_usage_matches(e.properties, m.filters)
),
agg AS (
    SELECT tenant_id, subscription_id, meter_id, bucket, group_key, count(*) AS events,
           coalesce(sum(value), 0) AS total, max(value) AS maximum,
           (array_agg(ts ORDER BY ts DESC, event_id COLLATE "C" DESC))[1] AS latest_ts,
           (array_agg(value ORDER BY ts DESC, event_id COLLATE "C" DESC))[1] AS latest_value,
           (array_agg(event_id ORDER BY ts DESC, event_id COLLATE "C" DESC))[1] AS latest_event,
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
    latest_value = CASE WHEN (excluded.latest_ts, excluded.latest_event COLLATE "C")
                             > (r.latest_ts, r.latest_event COLLATE "C")
                        THEN excluded.latest_value ELSE r.latest_value END,
    latest_event = CASE WHEN (excluded.latest_ts, excluded.latest_event COLLATE "C")
                             > (r.latest_ts, r.latest_event COLLATE "C")
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
    # See ROLLUP: this pass's events through the BRIN index, then hash joins.
    conn.execute(sa.text("SET LOCAL enable_nestloop = off; SET LOCAL enable_seqscan = off"))
    touched = conn.execute(sa.text(ROLLUP), {"lo": lo, "hi": hi}).rowcount
    conn.execute(sa.text("RESET enable_nestloop; RESET enable_seqscan"))
    conn.execute(
        sa.text(
            "update usage_rollup_state set xact_watermark = :hi, updated_at = :now where xact_watermark < :hi"
        ),
        {"hi": hi, "now": now},
    )
    return (int(lo), hi, int(touched or 0))


# The same fold, for one meter's events below the tenant's watermark (those the rollups hold).
_REFOLD = ROLLUP.replace(
    "FROM usage_events WHERE xact >= :lo AND xact < :hi",
    "FROM usage_events WHERE tenant_id = :t AND meter_id = :m AND xact < :hi",
)


def refold_meter(conn: sa.Connection, *, tenant_id: uuid.UUID, meter_id: uuid.UUID) -> int:
    """Rebuild one meter's rollups from its events, after what it counts changed.

    A meter's counting rules may change while no published plan version uses it, and events
    naming a subscription are kept for any meter; rollups folded under the old rules would
    otherwise be read together with raw events under the new ones. Runs in the caller's
    transaction, in turn with rollup passes.
    """
    conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": _ROLLUP_LOCK})
    hi = watermark(conn, tenant_id=tenant_id)
    keys = {"t": tenant_id, "m": meter_id}
    conn.execute(sa.text("delete from usage_rollups where tenant_id = :t and meter_id = :m"), keys)
    conn.execute(sa.text("delete from usage_rollup_values where tenant_id = :t and meter_id = :m"), keys)
    return int(conn.execute(sa.text(_REFOLD), keys | {"hi": hi}).rowcount or 0)


def summarize_new_pages(conn: sa.Connection) -> int:
    """Bring the BRIN index on `xact` up to date for pages written since its last summary.

    BRIN treats pages it has not summarized as matching every query, so without this a read's
    fresh-tail lookup would scan every page written since autovacuum last ran (a minute or
    more of ingestion); after it, only the pages written since the last rollup pass.
    """
    return int(
        conn.execute(
            sa.text(
                "select coalesce(sum(brin_summarize_new_values(i.inhrelid::regclass)), 0) from pg_inherits i "
                "where i.inhparent = 'ix_usage_events_xact'::regclass"
            )
        ).scalar_one()
    )


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


# One statement per meter and window, all aggregated in PostgreSQL, per group key:
# - raw events in the partial hours at the window's edges [a1, b1) and [a2, b2), whatever
#   their transaction;
# - the fresh tail: events in the whole hours [fa, fb) at or above the watermark, found through
#   the BRIN index on xact (the only condition an index can serve: `IS TRUE` keeps the planner
#   from walking the subscription's whole history in the primary key instead);
# - the hourly buckets of [fa, fb), which hold exactly the events below the watermark.
# Ties on `ts` go to the greater event id by code point (COLLATE "C"), as `Partial.combine`
# orders them.
_PARTS = """
WITH recent AS MATERIALIZED (
    SELECT ts, event_id, properties FROM usage_events
     WHERE xact >= :w AND (tenant_id = :t AND subscription_id = :s AND meter_id = :m) IS TRUE
),
raw AS (
    SELECT ts, event_id, properties FROM usage_events
     WHERE tenant_id = :t AND subscription_id = :s AND meter_id = :m AND ts >= :a1 AND ts < :b1
    UNION ALL
    SELECT ts, event_id, properties FROM usage_events
     WHERE tenant_id = :t AND subscription_id = :s AND meter_id = :m AND ts >= :a2 AND ts < :b2
    UNION ALL
    SELECT ts, event_id, properties FROM recent WHERE ts >= :fa AND ts < :fb
),
src AS (
    SELECT accrual_usage_group(properties, cast(:group_by as text[])) AS group_key,
           accrual_usage_value(properties, cast(:field as text)) AS value, ts, event_id COLLATE "C" AS event_id,
           CASE WHEN cast(:unique as boolean) THEN properties ->> cast(:field as text) END AS uvalue
      FROM raw WHERE accrual_usage_matches(properties, cast(:filters as jsonb))
)
SELECT group_key, count(*) AS events, coalesce(sum(value), 0) AS total, max(value) AS maximum,
       (array_agg(ts ORDER BY ts DESC, event_id DESC))[1] AS latest_ts,
       (array_agg(event_id ORDER BY ts DESC, event_id DESC))[1] AS latest_event,
       (array_agg(value ORDER BY ts DESC, event_id DESC))[1] AS latest_value,
       coalesce(sum(value * (extract(epoch FROM ts) * 1000000)), 0) AS weighted,
       array_agg(DISTINCT uvalue) FILTER (WHERE uvalue IS NOT NULL) AS distinct_values
  FROM src GROUP BY group_key
UNION ALL
SELECT group_key, sum(events), sum(total), max(maximum),
       (array_agg(latest_ts ORDER BY latest_ts DESC, latest_event COLLATE "C" DESC))[1],
       (array_agg(latest_event ORDER BY latest_ts DESC, latest_event COLLATE "C" DESC))[1],
       (array_agg(latest_value ORDER BY latest_ts DESC, latest_event COLLATE "C" DESC))[1],
       sum(weighted), NULL
  FROM usage_rollups
 WHERE tenant_id = :t AND subscription_id = :s AND meter_id = :m AND bucket >= :fa AND bucket < :fb
 GROUP BY group_key
"""

_DISTINCT = """
SELECT DISTINCT group_key, value FROM usage_rollup_values
 WHERE tenant_id = :t AND subscription_id = :s AND meter_id = :m AND bucket >= :fa AND bucket < :fb
"""


def read_position(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID
) -> tuple[int, dt.timedelta]:
    """What a read of the subscription's usage needs, in one round trip: the tenant's rollup
    watermark and the subscription's bucket grid offset."""
    row = conn.execute(
        sa.text(
            "select coalesce((select xact_watermark from usage_rollup_state where tenant_id = :t), 0) as w, "
            "usage_grid_offset_us as g from subscriptions where tenant_id = :t and subscription_id = :s"
        ),
        {"t": tenant_id, "s": subscription_id},
    ).one()
    return int(row.w), dt.timedelta(microseconds=int(row.g))


def window_parts(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    meter: MeterRules,
    start: dt.datetime,
    end: dt.datetime,
    watermark: int,
    grid: dt.timedelta,
) -> dict[str, list[Partial]]:
    """The partial aggregates, per group key, of the events in `[start, end)`: buckets wholly
    inside (on the subscription's hourly `grid`), raw events in the partial hours at either edge,
    and the fresh tail."""
    full_start, full_end = bucket_end_at_or_after(start, grid), bucket_start(end, grid)
    if full_start >= full_end:  # within one hour: all raw
        edges = {"a1": start, "b1": end, "a2": end, "b2": end, "fa": end, "fb": end}
    else:
        edges = {"a1": start, "b1": full_start, "a2": full_end, "b2": end, "fa": full_start, "fb": full_end}
    params = {
        "t": tenant_id,
        "s": subscription_id,
        "m": meter.meter_id,
        "group_by": list(meter.group_by),
        "field": meter.field,
        "filters": json.dumps(meter.filters),
        "w": watermark,
        "unique": meter.aggregation == "unique_count",
    } | edges
    distinct: dict[str, set[str]] = {}
    if meter.aggregation == "unique_count" and full_start < full_end:
        for row in conn.execute(sa.text(_DISTINCT), params):
            distinct.setdefault(row.group_key, set()).add(row.value)
    parts: dict[str, list[Partial]] = {}
    for row in conn.execute(sa.text(_PARTS), params):
        values = distinct.get(row.group_key, set()) if row.distinct_values is None else row.distinct_values
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
                distinct=frozenset(values),
            )
        )
    return parts
