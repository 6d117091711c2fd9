"""Usage storage: event ids, month partitions, attributed events, quarantine.

Writes are one COPY per table per batch, whatever the batch's size (an INSERT of `unnest`ed
arrays where a row may already exist).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import psycopg
import psycopg.errors
import sqlalchemy as sa

from accrual.store.cache import FactCache
from accrual.store.database import Database
from accrual.store.schema import PARTITION_PREFIX

_known_partitions: set[tuple[str, str]] = set()
_partition_lock = threading.Lock()
_PARTITION_LOCK = 0x55_53_50  # "USP": creating usage partitions


def month_start(instant: dt.datetime) -> dt.datetime:
    utc = instant.astimezone(dt.UTC)
    return dt.datetime(utc.year, utc.month, 1, tzinfo=dt.UTC)


def _next_month(start: dt.datetime) -> dt.datetime:
    return dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=dt.UTC)


def ensure_partitions(db: Database, instants: Iterable[dt.datetime]) -> None:
    """Make sure a month partition of usage_events exists for each instant (UTC months)."""
    months = {month_start(i) for i in instants}
    with _partition_lock:
        missing = [m for m in sorted(months) if (db.url, m.strftime("%Y%m")) not in _known_partitions]
    for month in missing:
        name = f"{PARTITION_PREFIX}{month.strftime('%Y%m')}"
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            # Processes creating the same partition take turns: the second finds it there.
            conn.execute(sa.text("select pg_advisory_lock(:k)"), {"k": _PARTITION_LOCK})
            try:
                if conn.execute(sa.text("select to_regclass(:n)"), {"n": name}).scalar_one() is None:
                    conn.execute(
                        sa.text(
                            f"CREATE TABLE {name} PARTITION OF usage_events "
                            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"
                        )
                    )
            finally:
                conn.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": _PARTITION_LOCK})
        with _partition_lock:
            _known_partitions.add((db.url, month.strftime("%Y%m")))


def meters_by_code(
    conn: sa.Connection, *, tenant_id: uuid.UUID, codes: Sequence[str]
) -> dict[str, sa.Row[Any]]:
    rows = conn.execute(
        sa.text(
            "select meter_id, code, aggregation, field from meters "
            "where tenant_id = :t and code = any(:codes) and archived_at is null"
        ),
        {"t": tenant_id, "codes": list(codes)},
    )
    return {row.code: row for row in rows}


def subscriptions_by_ref(
    conn: sa.Connection, *, tenant_id: uuid.UUID, refs: Sequence[str]
) -> dict[str, sa.Row[Any]]:
    if not refs:
        return {}
    rows = conn.execute(
        sa.text(
            "select subscription_id, external_id, status, start_at, ended_at, usage_closed_until from subscriptions "
            "where tenant_id = :t and external_id = any(:refs)"
        ),
        {"t": tenant_id, "refs": list(refs)},
    )
    return {row.external_id: row for row in rows}


def subscriptions_by_id(
    conn: sa.Connection, *, tenant_id: uuid.UUID, ids: Sequence[str]
) -> dict[str, sa.Row[Any]]:
    """Subscriptions named by our id (as text) in events."""
    if not ids:
        return {}
    rows = conn.execute(
        sa.text(
            "select subscription_id, subscription_id::text as ref, status, start_at, ended_at, usage_closed_until "
            "from subscriptions where tenant_id = :t and subscription_id::text = any(:refs)"
        ),
        {"t": tenant_id, "refs": list(ids)},
    )
    return {row.ref: row for row in rows}


class CustomerSubscription(NamedTuple):
    customer_ref: str
    subscription_id: uuid.UUID
    status: str
    start_at: dt.datetime
    ended_at: dt.datetime | None
    usage_closed_until: dt.datetime | None
    meter_ids: frozenset[uuid.UUID]  # the meters its plan version charges


# The meters a published plan version charges: its charges never change once published.
_charged_meters: FactCache[uuid.UUID, frozenset[uuid.UUID]] = FactCache(10_000)


def _meters_charged(
    conn: sa.Connection, *, tenant_id: uuid.UUID, versions: set[uuid.UUID]
) -> dict[uuid.UUID, frozenset[uuid.UUID]]:
    known = {v: _charged_meters.get(v) for v in versions}
    charged = {v: meters for v, meters in known.items() if meters is not None}
    missing = [v for v, meters in known.items() if meters is None]
    if not missing:
        return charged
    found: dict[uuid.UUID, set[uuid.UUID]] = {v: set() for v in missing}
    rows = conn.execute(
        sa.text(
            "select plan_version_id, meter_id from charges "
            "where tenant_id = :t and plan_version_id = any(:v) and meter_id is not null"
        ),
        {"t": tenant_id, "v": missing},
    )
    for row in rows:
        found[row.plan_version_id].add(row.meter_id)
    for version, meters in found.items():
        charged[version] = frozenset(meters)
        _charged_meters.put(version, charged[version])
    return charged


def customer_subscriptions(
    conn: sa.Connection, *, tenant_id: uuid.UUID, refs: Sequence[str]
) -> tuple[set[str], list[CustomerSubscription]]:
    """The customers that exist among `refs`, and their subscriptions with the meters their plan charges."""
    if not refs:
        return set(), []
    rows = conn.execute(
        sa.text(
            "select c.external_id, s.subscription_id, s.status, s.start_at, s.ended_at, s.usage_closed_until, "
            "s.plan_version_id from customers c left join subscriptions s "
            "on s.tenant_id = c.tenant_id and s.customer_id = c.customer_id "
            "where c.tenant_id = :t and c.external_id = any(:refs) order by s.subscription_id"
        ),
        {"t": tenant_id, "refs": list(refs)},
    ).all()
    subscribed = [row for row in rows if row.subscription_id is not None]
    charged = _meters_charged(conn, tenant_id=tenant_id, versions={row.plan_version_id for row in subscribed})
    return {row.external_id for row in rows}, [
        CustomerSubscription(
            row.external_id,
            row.subscription_id,
            row.status,
            row.start_at,
            row.ended_at,
            row.usage_closed_until,
            charged[row.plan_version_id],
        )
        for row in subscribed
    ]


def _copy(conn: sa.Connection, statement: str, rows: Iterable[Sequence[Any]]) -> None:
    """COPY rows into a table within the connection's transaction (text format; jsonb given as text)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)  # noqa: S101 - the only driver we configure
    with raw.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def claim_ids(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    event_ids: Sequence[str],
    hashes: Sequence[bytes],
    instants: Sequence[dt.datetime],
    rejected: Sequence[str | None],
    now: dt.datetime,
) -> set[str]:
    """Record event ids for ever; return those that were new (a repeat of a known id is not).

    The common case, all new, is one COPY; if any id is known (a retry, a replay, a concurrent
    sender of the same ids), the COPY is rolled back and the ids are inserted one by one, the
    known ones skipped.
    """
    if not event_ids:
        return set()
    # In id order, so two batches sharing new ids wait for each other instead of deadlocking.
    rows = sorted(zip(event_ids, hashes, instants, rejected, strict=True))
    try:
        with conn.begin_nested():
            _copy(
                conn,
                "COPY usage_event_ids (tenant_id, event_id, payload_hash, ts, received_at, rejected) FROM STDIN",
                ((tenant_id, i, h, ts, now, r) for i, h, ts, r in rows),
            )
        return set(event_ids)
    except psycopg.errors.UniqueViolation:
        pass  # some ids are known: the savepoint is rolled back, take them one by one
    inserted = conn.execute(
        sa.text(
            "insert into usage_event_ids (tenant_id, event_id, payload_hash, ts, received_at, rejected) "
            "select :t, i, h, ts, :now, r from unnest(cast(:ids as text[]), cast(:hashes as bytea[]), "
            "cast(:ts as timestamptz[]), cast(:rejected as text[])) with ordinality as u(i, h, ts, r, n) "
            "order by n on conflict do nothing returning event_id"
        ),
        {
            "t": tenant_id,
            "ids": [r[0] for r in rows],
            "hashes": [r[1] for r in rows],
            "ts": [r[2] for r in rows],
            "rejected": [r[3] for r in rows],
            "now": now,
        },
    )
    return set(inserted.scalars())


def known_ids(
    conn: sa.Connection, *, tenant_id: uuid.UUID, event_ids: Sequence[str]
) -> dict[str, sa.Row[Any]]:
    if not event_ids:
        return {}
    rows = conn.execute(
        sa.text(
            "select event_id, payload_hash, rejected from usage_event_ids where tenant_id = :t and event_id = any(:ids)"
        ),
        {"t": tenant_id, "ids": list(event_ids)},
    )
    return {row.event_id: row for row in rows}


def insert_events(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    subscription_ids: Sequence[uuid.UUID],
    meter_ids: Sequence[uuid.UUID],
    instants: Sequence[dt.datetime],
    buckets: Sequence[dt.datetime],
    event_ids: Sequence[str],
    properties: Sequence[str],
    late: Sequence[bool],
    now: dt.datetime,
) -> None:
    """Store attributed events (`properties` as JSON text): one COPY."""
    if not event_ids:
        return
    _copy(
        conn,
        "COPY usage_events (tenant_id, subscription_id, meter_id, ts, bucket, event_id, properties, received_at, "
        "late) FROM STDIN",
        (
            (tenant_id, s, m, ts, b, i, p, now, lt)
            for s, m, ts, b, i, p, lt in zip(
                subscription_ids, meter_ids, instants, buckets, event_ids, properties, late, strict=True
            )
        ),
    )


def insert_quarantine(
    conn: sa.Connection, *, tenant_id: uuid.UUID, rows: Sequence[dict[str, Any]], now: dt.datetime
) -> None:
    if not rows:
        return
    _copy(
        conn,
        "COPY usage_quarantine (tenant_id, event_id, meter, subscription_ref, customer_ref, ts, properties, "
        "reason, detail, received_at) FROM STDIN",
        (
            (
                tenant_id,
                r["event_id"],
                r["meter"],
                r["subscription_ref"],
                r["customer_ref"],
                r["ts"],
                r["properties"],
                r["reason"],
                r["detail"],
                now,
            )
            for r in rows
        ),
    )


def lock_subscriptions(
    conn: sa.Connection, *, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, sa.Row[Any]]:
    """Share-lock the subscriptions events are attributed to, and read their life and billing state.

    Billing locks a subscription for update while it closes a period's usage, so an event is either
    committed before the period is billed (and counted in it) or sees the period closed (and is late).
    """
    if not ids:
        return {}
    rows = conn.execute(
        sa.text(
            "select subscription_id, status, start_at, ended_at, usage_closed_until, usage_grid_offset_us "
            "from subscriptions where tenant_id = :t and subscription_id = any(:ids) "
            "order by subscription_id for share"
        ),
        {"t": tenant_id, "ids": list(ids)},
    )
    return {row.subscription_id: row for row in rows}


def held(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID | None,
    customer_refs: Sequence[str] = (),
    subscription_refs: Sequence[str] = (),
    meter_codes: Sequence[str] = (),
    everything: bool = False,
    after: tuple[uuid.UUID, dt.datetime, str] | None = None,
    limit: int,
) -> list[sa.Row[Any]]:
    """Quarantined events not yet released (of one tenant, or all), optionally only those naming these
    refs, in (tenant, arrival, id) order after `after`."""
    conditions = ["released_at is null"]
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        conditions.append("(tenant_id, received_at, event_id) > (:at, :ar, :ai)")
        params |= {"at": after[0], "ar": after[1], "ai": after[2]}
    if tenant_id is not None:
        conditions.append("tenant_id = :t")
        params["t"] = tenant_id
    if not everything:
        conditions.append(
            "(customer_ref = any(:custs) or subscription_ref = any(:subs) or meter = any(:meters))"
        )
        params |= {"custs": list(customer_refs), "subs": list(subscription_refs), "meters": list(meter_codes)}
    return list(
        conn.execute(
            sa.text(
                f"select * from usage_quarantine where {' and '.join(conditions)} "  # noqa: S608 - fixed clauses
                "order by tenant_id, received_at, event_id limit :limit for update skip locked"
            ),
            params,
        )
    )


def release(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    event_ids: Sequence[str],
    subscription_ids: Sequence[uuid.UUID],
    now: dt.datetime,
) -> None:
    if not event_ids:
        return
    conn.execute(
        sa.text(
            "update usage_quarantine q set released_at = :now, released_to = u.s "
            "from unnest(cast(:ids as text[]), cast(:subs as uuid[])) as u(i, s) "
            "where q.tenant_id = :t and q.event_id = u.i"
        ),
        {"t": tenant_id, "ids": list(event_ids), "subs": list(subscription_ids), "now": now},
    )


def requalify(conn: sa.Connection, *, tenant_id: uuid.UUID, rows: Sequence[tuple[str, str, str]]) -> None:
    """Record the current reason (and detail) of events that stay in quarantine."""
    if not rows:
        return
    conn.execute(
        sa.text(
            "update usage_quarantine q set reason = u.r, detail = u.d "
            "from unnest(cast(:ids as text[]), cast(:reasons as text[]), cast(:details as text[])) as u(i, r, d) "
            "where q.tenant_id = :t and q.event_id = u.i and (q.reason, q.detail) is distinct from (u.r, u.d)"
        ),
        {
            "t": tenant_id,
            "ids": [r[0] for r in rows],
            "reasons": [r[1] for r in rows],
            "details": [r[2] for r in rows],
        },
    )
