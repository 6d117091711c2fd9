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
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from accrual.domain.usage import Partial, bucket_end_at_or_after, bucket_start
from accrual.store.database import array_param

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


# One statement for many (subscription, meter, window) requests of a tenant, aggregated in
# PostgreSQL per request and group key:
# - raw events in the partial hours at each window's edges [a1, b1) and [a2, b2), whatever
#   their transaction: LATERAL, so each request's ranges are read through the primary key
#   (a plain join lets the planner hash-join a whole partition instead), and `OFFSET 0` in
#   each LATERAL subquery, or the planner pulls it up into exactly that join (two scans of
#   every event of the month for each batch of a billing run);
# - the fresh tail: the tenant's events at or above the watermark, found through the BRIN index
#   on xact (`IS TRUE` keeps the planner from walking the tenant's history in the primary key),
#   in each window's whole hours [fa, fb);
# - the hourly buckets of [fa, fb), which hold exactly the events below the watermark.
# Each request's meter says how its events are grouped, valued and filtered. Ties on `ts` go to
# the greater event id by code point (COLLATE "C"), as `Partial.combine` orders them.
_REQUESTS = """
req AS (
    SELECT * FROM unnest(cast(:nos AS int[]), cast(:subs AS uuid[]), cast(:meters AS uuid[]),
                         cast(:a1 AS timestamptz[]), cast(:b1 AS timestamptz[]), cast(:a2 AS timestamptz[]),
                         cast(:b2 AS timestamptz[]), cast(:fa AS timestamptz[]), cast(:fb AS timestamptz[]))
           AS r(no, s, m, a1, b1, a2, b2, fa, fb)
)"""

_PARTS = (
    "WITH"  # noqa: S608 - constant SQL put together, no input in it
    + _REQUESTS
    + """,
recent AS MATERIALIZED (
    SELECT subscription_id, meter_id, ts, event_id, properties FROM usage_events
     WHERE xact >= :w AND (tenant_id = :t AND subscription_id = ANY(cast(:subs AS uuid[]))) IS TRUE
),
raw AS (
    SELECT r.no, r.m, e.ts, e.event_id, e.properties FROM req r CROSS JOIN LATERAL (
        SELECT ts, event_id, properties FROM usage_events
         WHERE tenant_id = :t AND subscription_id = r.s AND meter_id = r.m AND ts >= r.a1 AND ts < r.b1 OFFSET 0) e
    UNION ALL
    SELECT r.no, r.m, e.ts, e.event_id, e.properties FROM req r CROSS JOIN LATERAL (
        SELECT ts, event_id, properties FROM usage_events
         WHERE tenant_id = :t AND subscription_id = r.s AND meter_id = r.m AND ts >= r.a2 AND ts < r.b2 OFFSET 0) e
    UNION ALL
    SELECT r.no, r.m, e.ts, e.event_id, e.properties FROM req r JOIN recent e
        ON e.subscription_id = r.s AND e.meter_id = r.m AND e.ts >= r.fa AND e.ts < r.fb
),
src AS (
    SELECT raw.no, accrual_usage_group(raw.properties, mt.group_by) AS group_key,
           accrual_usage_value(raw.properties, mt.field) AS value, raw.ts, raw.event_id COLLATE "C" AS event_id,
           CASE WHEN mt.aggregation = 'unique_count' THEN raw.properties ->> mt.field END AS uvalue
      FROM raw JOIN meters mt ON mt.tenant_id = :t AND mt.meter_id = raw.m
     WHERE accrual_usage_matches(raw.properties, mt.filters)
)
SELECT no, group_key, count(*) AS events, coalesce(sum(value), 0) AS total, max(value) AS maximum,
       (array_agg(ts ORDER BY ts DESC, event_id DESC))[1] AS latest_ts,
       (array_agg(event_id ORDER BY ts DESC, event_id DESC))[1] AS latest_event,
       (array_agg(value ORDER BY ts DESC, event_id DESC))[1] AS latest_value,
       coalesce(sum(value * (extract(epoch FROM ts) * 1000000)), 0) AS weighted,
       array_agg(DISTINCT uvalue) FILTER (WHERE uvalue IS NOT NULL) AS distinct_values
  FROM src GROUP BY no, group_key
UNION ALL
SELECT r.no, u.group_key, sum(u.events), sum(u.total), max(u.maximum),
       (array_agg(u.latest_ts ORDER BY u.latest_ts DESC, u.latest_event COLLATE "C" DESC))[1],
       (array_agg(u.latest_event ORDER BY u.latest_ts DESC, u.latest_event COLLATE "C" DESC))[1],
       (array_agg(u.latest_value ORDER BY u.latest_ts DESC, u.latest_event COLLATE "C" DESC))[1],
       sum(u.weighted), NULL
  FROM req r CROSS JOIN LATERAL (
        SELECT * FROM usage_rollups
         WHERE tenant_id = :t AND subscription_id = r.s AND meter_id = r.m AND bucket >= r.fa AND bucket < r.fb OFFSET 0) u
 GROUP BY r.no, u.group_key
"""
)

_DISTINCT = (
    "WITH"  # noqa: S608 - constant SQL put together, no input in it
    + _REQUESTS
    + """
SELECT DISTINCT r.no, v.group_key, v.value FROM req r CROSS JOIN LATERAL (
    SELECT group_key, value FROM usage_rollup_values
     WHERE tenant_id = :t AND subscription_id = r.s AND meter_id = r.m AND bucket >= r.fa AND bucket < r.fb OFFSET 0) v
"""
)

# Each event's value in time order, for prices that rate every event on its own.
_VALUES = (
    "WITH"  # noqa: S608 - constant SQL put together, no input in it
    + _REQUESTS
    + """
SELECT r.no, accrual_usage_value(e.properties, mt.field) AS value
  FROM req r
  CROSS JOIN LATERAL (
      SELECT ts, event_id, properties FROM usage_events
       WHERE tenant_id = :t AND subscription_id = r.s AND meter_id = r.m AND ts >= r.a1 AND ts < r.b2 OFFSET 0) e
  JOIN meters mt ON mt.tenant_id = :t AND mt.meter_id = r.m
 WHERE accrual_usage_matches(e.properties, mt.filters)
 ORDER BY r.no, e.ts, e.event_id COLLATE "C"
"""
)


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


@dataclasses.dataclass(frozen=True)
class PartsRequest:
    """The events of one subscription and meter in `[start, end)`, on the subscription's hourly grid."""

    subscription_id: uuid.UUID
    meter_id: uuid.UUID
    start: dt.datetime
    end: dt.datetime
    grid: dt.timedelta

    def edges(self) -> tuple[dt.datetime, ...]:
        """(a1, b1, a2, b2, fa, fb): the raw edges and the whole hours between them."""
        full_start, full_end = (
            bucket_end_at_or_after(self.start, self.grid),
            bucket_start(self.end, self.grid),
        )
        if full_start >= full_end:  # within one hour: all raw
            return (self.start, self.end, self.end, self.end, self.end, self.end)
        return (self.start, full_start, full_end, self.end, full_start, full_end)


def _request_params(tenant_id: uuid.UUID, requests: Sequence[PartsRequest], watermark: int) -> dict[str, Any]:
    edges = [r.edges() for r in requests]
    return {
        "t": tenant_id,
        "w": watermark,
        "nos": array_param(range(len(requests))),
        "subs": array_param([r.subscription_id for r in requests]),
        "meters": array_param([r.meter_id for r in requests]),
        **{
            name: array_param([e[i] for e in edges])
            for i, name in enumerate(("a1", "b1", "a2", "b2", "fa", "fb"))
        },
    }


def parts_of_many(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    requests: Sequence[PartsRequest],
    watermark: int,
    unique: bool,
) -> list[dict[str, list[Partial]]]:
    """The partial aggregates, per group key, of each request's events (in the requests' order):
    buckets wholly inside its window, raw events in the partial hours at either edge, and the
    fresh tail. One statement for all of them (two when a unique count needs its rollups' values).
    """
    found: list[dict[str, list[Partial]]] = [{} for _ in requests]
    if not requests:
        return found
    params = _request_params(tenant_id, requests, watermark)
    distinct: dict[tuple[int, str], set[str]] = {}
    if unique:
        for row in conn.execute(sa.text(_DISTINCT), params):
            distinct.setdefault((row.no, row.group_key), set()).add(row.value)
    for row in conn.execute(sa.text(_PARTS), params):
        values = (
            distinct.get((row.no, row.group_key), set())
            if row.distinct_values is None
            else row.distinct_values
        )
        found[row.no].setdefault(row.group_key, []).append(
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
    return found


def values_of_many(
    conn: sa.Connection, *, tenant_id: uuid.UUID, requests: Sequence[PartsRequest]
) -> list[list[Decimal]]:
    """Each request's events' values in time order (events without one are skipped)."""
    found: list[list[Decimal]] = [[] for _ in requests]
    if requests:
        # The raw range is the whole window: a1 = start, b2 = end.
        whole = [dataclasses.replace(r, grid=dt.timedelta(0)) for r in requests]
        params = _request_params(tenant_id, whole, 0) | {
            "a1": [r.start for r in requests],
            "b2": [r.end for r in requests],
        }
        for row in conn.execute(sa.text(_VALUES), params):
            if row.value is not None:
                found[row.no].append(Decimal(row.value))
    return found
