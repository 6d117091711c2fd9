"""Webhook endpoints, their secrets, the relay's high-water mark, deliveries and attempts.

The relay hands outbox events to delivery in the order of their transaction ids, and only
below the oldest transaction still running in this database: every transaction below that
mark has ended, so no event below it can still appear, and an event whose transaction commits
late is picked up when the mark passes it. Events of one entity are written under that
entity's row lock, so their outbox sequence is their commit order; a delivery waits while an
earlier event of its entity is still to be handed on or still pending for the same endpoint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
import structlog

from accrual.store import ids
from accrual.store.database import Database, insert_rows
from accrual.store.schema import (
    outbox_events,
    outbox_relay,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_secrets,
)

RELAY = "webhooks"
# The outbox's trigger notifies this channel when events commit.
CHANNEL = "accrual_outbox"

log = structlog.get_logger("accrual.relay")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    tenant_id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: dt.datetime | None
    failing_since: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    def snapshot(self) -> dict[str, Any]:
        """The endpoint as events and the audit log record it (never its secret)."""
        return {
            "endpoint_id": str(self.endpoint_id),
            "url": self.url,
            "description": self.description,
            "event_types": list(self.event_types),
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
            "failing_since": self.failing_since.isoformat() if self.failing_since else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def endpoint_from_row(row: sa.Row[Any]) -> Endpoint:
    return Endpoint(
        tenant_id=row.tenant_id,
        endpoint_id=row.endpoint_id,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types),
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        disabled_at=row.disabled_at,
        failing_since=row.failing_since,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def insert_endpoint(conn: sa.Connection, endpoint: Endpoint) -> None:
    conn.execute(sa.insert(webhook_endpoints).values(dataclasses.asdict(endpoint)))


def get_endpoint(
    conn: sa.Connection, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, for_update: bool = False
) -> Endpoint | None:
    query = sa.select(webhook_endpoints).where(
        webhook_endpoints.c.tenant_id == tenant_id, webhook_endpoints.c.endpoint_id == endpoint_id
    )
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return endpoint_from_row(row) if row is not None else None


def update_endpoint(
    conn: sa.Connection, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, **values: Any
) -> Endpoint:
    row = conn.execute(
        sa.update(webhook_endpoints)
        .where(webhook_endpoints.c.tenant_id == tenant_id, webhook_endpoints.c.endpoint_id == endpoint_id)
        .values(**values)
        .returning(webhook_endpoints)
    ).one()
    return endpoint_from_row(row)


def select_endpoints(*, tenant_id: uuid.UUID) -> sa.Select[Any]:
    return sa.select(webhook_endpoints).where(webhook_endpoints.c.tenant_id == tenant_id)


@dataclasses.dataclass(frozen=True)
class Secret:
    secret_id: uuid.UUID
    secret: str
    created_at: dt.datetime
    expires_at: dt.datetime | None


def insert_secret(
    conn: sa.Connection, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, secret: str, now: dt.datetime
) -> Secret:
    row = Secret(secret_id=ids.new_id(), secret=secret, created_at=now, expires_at=None)
    conn.execute(
        sa.insert(webhook_secrets).values(
            tenant_id=tenant_id, endpoint_id=endpoint_id, **dataclasses.asdict(row)
        )
    )
    return row


def live_secrets(
    conn: sa.Connection, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, now: dt.datetime
) -> list[Secret]:
    """The endpoint's secrets that still sign, newest first."""
    rows = conn.execute(
        sa.select(webhook_secrets)
        .where(
            webhook_secrets.c.tenant_id == tenant_id,
            webhook_secrets.c.endpoint_id == endpoint_id,
            sa.or_(webhook_secrets.c.expires_at.is_(None), webhook_secrets.c.expires_at > now),
        )
        .order_by(webhook_secrets.c.created_at.desc(), webhook_secrets.c.secret_id)
    )
    return [Secret(r.secret_id, r.secret, r.created_at, r.expires_at) for r in rows]


def expire_current_secret(
    conn: sa.Connection, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, at: dt.datetime
) -> None:
    conn.execute(
        sa.update(webhook_secrets)
        .where(
            webhook_secrets.c.tenant_id == tenant_id,
            webhook_secrets.c.endpoint_id == endpoint_id,
            webhook_secrets.c.expires_at.is_(None),
        )
        .values(expires_at=at)
    )


# Whether endpoint `w` takes events of type `o.event_type`: no filter, the type itself, its
# entity's `<entity>.*`, or `*`.
_MATCHES = """
    (cardinality(w.event_types) = 0 OR o.event_type = ANY (w.event_types)
     OR split_part(o.event_type, '.', 1) || '.*' = ANY (w.event_types) OR '*' = ANY (w.event_types))
"""


def _insert_deliveries(conn: sa.Connection, *, conditions: Sequence[str], params: dict[str, Any]) -> int:
    """Make a pending delivery (of origin `:origin`) for each outbox event `o` and enabled
    endpoint `w` of its tenant that takes it and meets `conditions`; return how many."""
    statement = f"""
        WITH made AS (
            INSERT INTO webhook_deliveries (tenant_id, delivery_id, endpoint_id, event_id, seq, event_type,
                entity_type, entity_id, origin, status, attempts, next_attempt_at, created_at)
            SELECT o.tenant_id, gen_random_uuid(), w.endpoint_id, o.event_id, o.seq, o.event_type,
                   o.entity_type, o.entity_id, :origin, 'pending', 0, :now, :now
            FROM outbox_events o
            JOIN webhook_endpoints w ON w.tenant_id = o.tenant_id AND w.enabled
            WHERE {" AND ".join(conditions)} AND {_MATCHES}
            ON CONFLICT DO NOTHING
            RETURNING 1)
        SELECT count(*) FROM made
    """  # noqa: S608 - conditions are fixed strings; values are bound
    return int(conn.execute(sa.text(statement), params).scalar_one())


# The oldest transaction still running in this database, as of one snapshot (or, with none
# running, the next transaction id): every transaction of this database below it has ended.
# `pg_snapshot_xmin` alone would be the oldest in the whole cluster, so a long transaction in
# another database on the same server would hold webhooks back. The snapshot's running ids
# (top-level, as outbox rows record them) are matched to this database's sessions by their
# 32-bit form; a transaction that ends between the two reads has committed or aborted, and a
# later statement sees what it wrote.
HIGH_WATER_SQL = """
    WITH s AS (SELECT pg_current_snapshot() AS snap)
    SELECT coalesce(
        (SELECT min(x) FROM s, pg_snapshot_xip(s.snap) AS x
         WHERE (x::text::bigint % 4294967296) IN (
             SELECT backend_xid::text::bigint FROM pg_stat_activity
             WHERE datname = current_database() AND backend_xid IS NOT NULL)),
        (SELECT pg_snapshot_xmax(snap) FROM s))
"""
_HIGH_WATER = sa.text(f"SELECT ({HIGH_WATER_SQL})::text")


def fan_out(conn: sa.Connection, *, now: dt.datetime) -> int:
    """Hand every event below the current high-water mark to the endpoints that existed before
    it and take it; return how many deliveries that made (none while another relay holds the
    mark: it is doing this)."""
    # The mark first, before this transaction takes a transaction id of its own.
    high = conn.execute(_HIGH_WATER).scalar_one()
    low = conn.execute(
        sa.text("SELECT watermark::text FROM outbox_relay WHERE name = :name FOR UPDATE SKIP LOCKED"),
        {"name": RELAY},
    ).scalar()
    if low is None or int(high) <= int(low):
        return 0
    made = _insert_deliveries(
        conn,
        conditions=["o.xid >= cast(:low AS xid8)", "o.xid < cast(:high AS xid8)", "o.xid > w.created_xid"],
        params={"low": low, "high": high, "now": now, "origin": "relay"},
    )
    conn.execute(
        sa.text(
            "UPDATE outbox_relay SET watermark = cast(:high AS xid8), updated_at = :now WHERE name = :name"
        ),
        {"high": high, "now": now, "name": RELAY},
    )
    return made


@dataclasses.dataclass(frozen=True)
class Claimed:
    """A delivery a relay holds until its lease ends, with all it needs to send it."""

    tenant_id: uuid.UUID
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    attempts: int
    event_type: str
    occurred_at: dt.datetime
    payload: dict[str, Any]
    url: str
    secrets: list[str]
    allow_insecure: bool
    allowed_networks: list[str]


_CLAIM = sa.text("""
WITH due AS (
    SELECT d.tenant_id, d.delivery_id
    FROM webhook_deliveries d
    JOIN webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.endpoint_id = d.endpoint_id AND w.enabled
    WHERE d.status = 'pending' AND d.next_attempt_at <= :now
      AND (d.leased_until IS NULL OR d.leased_until <= :now)
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries e
          WHERE e.tenant_id = d.tenant_id AND e.endpoint_id = d.endpoint_id AND e.entity_type = d.entity_type
            AND e.entity_id = d.entity_id AND e.status = 'pending' AND e.seq < d.seq)
      AND NOT EXISTS (
          SELECT 1 FROM outbox_events o
          WHERE o.tenant_id = d.tenant_id AND o.entity_type = d.entity_type AND o.entity_id = d.entity_id
            AND o.seq < d.seq AND o.xid >= (SELECT watermark FROM outbox_relay WHERE name = :relay))
    ORDER BY d.next_attempt_at, d.seq
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d SET leased_until = :lease_until
FROM due
JOIN outbox_events o ON true
JOIN webhook_endpoints w ON true
JOIN tenants t ON t.tenant_id = due.tenant_id
WHERE d.tenant_id = due.tenant_id AND d.delivery_id = due.delivery_id
  AND o.tenant_id = d.tenant_id AND o.event_id = d.event_id
  AND w.tenant_id = d.tenant_id AND w.endpoint_id = d.endpoint_id
RETURNING d.tenant_id, d.delivery_id, d.endpoint_id, d.event_id, d.attempts, o.event_type, o.occurred_at,
    o.payload, w.url, t.allow_insecure_webhooks, t.webhook_allowed_networks,
    ARRAY(SELECT s.secret FROM webhook_secrets s
          WHERE s.tenant_id = d.tenant_id AND s.endpoint_id = d.endpoint_id
            AND (s.expires_at IS NULL OR s.expires_at > :now)
          ORDER BY s.created_at DESC, s.secret_id) AS secrets
""")


def claim(conn: sa.Connection, *, now: dt.datetime, lease_until: dt.datetime, limit: int) -> list[Claimed]:
    """Take up to `limit` deliveries that are due, each the earliest pending of its entity for
    its endpoint, for this relay until `lease_until`."""
    rows = conn.execute(
        _CLAIM, {"now": now, "lease_until": lease_until, "limit": limit, "relay": RELAY}
    ).all()
    return [
        Claimed(
            tenant_id=r.tenant_id,
            delivery_id=r.delivery_id,
            endpoint_id=r.endpoint_id,
            event_id=r.event_id,
            attempts=r.attempts,
            event_type=r.event_type,
            occurred_at=r.occurred_at,
            payload=r.payload,
            url=r.url,
            secrets=list(r.secrets),
            allow_insecure=r.allow_insecure_webhooks,
            allowed_networks=list(r.webhook_allowed_networks),
        )
        for r in rows
    ]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt came to, and what the delivery becomes."""

    tenant_id: uuid.UUID
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    attempt: int
    attempted_at: dt.datetime
    url: str
    request_headers: dict[str, str]
    status_code: int | None
    response_body: str | None
    latency_ms: int
    error: str | None
    outcome: str  # succeeded, failed, gone
    next_attempt_at: dt.datetime | None  # for a failure that will be tried again


_RECORD = sa.text("""
UPDATE webhook_deliveries d SET
    attempts = d.attempts + 1,
    status = r.status,
    next_attempt_at = coalesce(r.next_attempt_at, d.next_attempt_at),
    leased_until = NULL,
    last_status_code = r.status_code,
    last_error = r.error,
    completed_at = CASE WHEN r.status = 'pending' THEN NULL ELSE r.attempted_at END
FROM unnest(cast(:tenant_ids AS uuid[]), cast(:delivery_ids AS uuid[]), cast(:statuses AS text[]),
            cast(:next_attempts AS timestamptz[]), cast(:status_codes AS integer[]), cast(:errors AS text[]),
            cast(:attempted AS timestamptz[]))
    AS r(tenant_id, delivery_id, status, next_attempt_at, status_code, error, attempted_at)
WHERE d.tenant_id = r.tenant_id AND d.delivery_id = r.delivery_id
""")


def record(conn: sa.Connection, outcomes: Sequence[Outcome]) -> None:
    """Store the attempts and move their deliveries on, in two statements."""
    if not outcomes:
        return
    insert_rows(
        conn,
        webhook_attempts,
        [
            {
                "tenant_id": o.tenant_id,
                "attempt_id": ids.new_id(),
                "delivery_id": o.delivery_id,
                "endpoint_id": o.endpoint_id,
                "event_id": o.event_id,
                "attempt": o.attempt,
                "attempted_at": o.attempted_at,
                "url": o.url,
                "request_headers": o.request_headers,
                "status_code": o.status_code,
                "response_body": o.response_body,
                "latency_ms": o.latency_ms,
                "error": o.error,
                "outcome": o.outcome,
            }
            for o in outcomes
        ],
    )

    def status(o: Outcome) -> str:
        if o.outcome == "succeeded":
            return "succeeded"
        return "pending" if o.next_attempt_at is not None else "failed"

    conn.execute(
        _RECORD,
        {
            "tenant_ids": [o.tenant_id for o in outcomes],
            "delivery_ids": [o.delivery_id for o in outcomes],
            "statuses": [status(o) for o in outcomes],
            "next_attempts": [o.next_attempt_at for o in outcomes],
            "status_codes": [o.status_code for o in outcomes],
            "errors": [o.error for o in outcomes],
            "attempted": [o.attempted_at for o in outcomes],
        },
    )


def mark_endpoint_health(
    conn: sa.Connection,
    *,
    succeeded: Sequence[tuple[uuid.UUID, uuid.UUID]],
    failed: Sequence[tuple[uuid.UUID, uuid.UUID]],
    now: dt.datetime,
) -> None:
    """An endpoint that took a delivery is healthy again; one that failed is failing since now,
    unless it already was."""
    for keys, value, condition in (
        (succeeded, None, webhook_endpoints.c.failing_since.is_not(None)),
        (failed, now, webhook_endpoints.c.failing_since.is_(None)),
    ):
        if keys:
            conn.execute(
                sa.update(webhook_endpoints)
                .where(sa.tuple_(webhook_endpoints.c.tenant_id, webhook_endpoints.c.endpoint_id).in_(keys))
                .where(condition)
                .values(failing_since=value)
            )


def failing_for_too_long(
    conn: sa.Connection, *, keys: Sequence[tuple[uuid.UUID, uuid.UUID]], since: dt.datetime
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Of these endpoints, the enabled ones failing since `since` or before."""
    if not keys:
        return []
    rows = conn.execute(
        sa.select(webhook_endpoints.c.tenant_id, webhook_endpoints.c.endpoint_id).where(
            sa.tuple_(webhook_endpoints.c.tenant_id, webhook_endpoints.c.endpoint_id).in_(keys),
            webhook_endpoints.c.enabled,
            webhook_endpoints.c.failing_since <= since,
        )
    )
    return [(r.tenant_id, r.endpoint_id) for r in rows]


def next_attempt_due(conn: sa.Connection) -> dt.datetime | None:
    """When the earliest pending delivery of an enabled endpoint falls due."""
    return conn.execute(
        sa.select(sa.func.min(webhook_deliveries.c.next_attempt_at))
        .select_from(
            webhook_deliveries.join(
                webhook_endpoints,
                sa.and_(
                    webhook_endpoints.c.tenant_id == webhook_deliveries.c.tenant_id,
                    webhook_endpoints.c.endpoint_id == webhook_deliveries.c.endpoint_id,
                ),
            )
        )
        .where(webhook_deliveries.c.status == "pending", webhook_endpoints.c.enabled)
    ).scalar()


def create_deliveries(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    origin: str,
    now: dt.datetime,
    endpoint_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> int:
    """New deliveries (a redelivery or a replay) of already relayed events to enabled
    endpoints that take them: one event, or those that occurred in [since, until)."""
    conditions = [
        "o.tenant_id = :tenant_id",
        "o.xid < (SELECT watermark FROM outbox_relay WHERE name = :relay)",
    ]
    params: dict[str, Any] = {"tenant_id": tenant_id, "origin": origin, "now": now, "relay": RELAY}
    if endpoint_id is not None:
        conditions.append("w.endpoint_id = :endpoint_id")
        params["endpoint_id"] = endpoint_id
    if event_id is not None:
        conditions.append("o.event_id = :event_id")
        params["event_id"] = event_id
    if since is not None:
        conditions.append("o.occurred_at >= :since")
        params["since"] = since
    if until is not None:
        conditions.append("o.occurred_at < :until")
        params["until"] = until
    return _insert_deliveries(conn, conditions=conditions, params=params)


def select_deliveries(*, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> sa.Select[Any]:
    return sa.select(webhook_deliveries).where(
        webhook_deliveries.c.tenant_id == tenant_id, webhook_deliveries.c.endpoint_id == endpoint_id
    )


def attempts_of(
    conn: sa.Connection, *, tenant_id: uuid.UUID, delivery_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[sa.Row[Any]]]:
    found: dict[uuid.UUID, list[sa.Row[Any]]] = {d: [] for d in delivery_ids}
    if delivery_ids:
        rows = conn.execute(
            sa.select(webhook_attempts)
            .where(
                webhook_attempts.c.tenant_id == tenant_id,
                webhook_attempts.c.delivery_id.in_(delivery_ids),
            )
            .order_by(webhook_attempts.c.attempted_at, webhook_attempts.c.attempt)
        )
        for row in rows:
            found[row.delivery_id].append(row)
    return found


def event_exists(conn: sa.Connection, *, tenant_id: uuid.UUID, event_id: uuid.UUID) -> bool:
    return (
        conn.execute(
            sa.select(outbox_events.c.seq).where(
                outbox_events.c.tenant_id == tenant_id, outbox_events.c.event_id == event_id
            )
        ).first()
        is not None
    )


def watermark(conn: sa.Connection) -> int:
    return int(
        conn.execute(
            sa.select(sa.cast(outbox_relay.c.watermark, sa.Text)).where(outbox_relay.c.name == RELAY)
        ).scalar_one()
    )


def pull(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    after: tuple[int, int] | None,
    limit: int,
    event_types: Sequence[str] = (),
) -> list[sa.Row[Any]]:
    """A tenant's events in the relay's order (transaction id, then sequence), only below the
    high-water mark, so a reader that follows the cursor never misses one."""
    conditions = ["tenant_id = :tenant_id", f"xid < ({HIGH_WATER_SQL})"]
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit}
    if after is not None:
        conditions.append("(xid, seq) > (cast(:after_xid AS xid8), :after_seq)")
        params["after_xid"], params["after_seq"] = str(after[0]), after[1]
    if event_types:
        conditions.append("event_type = ANY (:event_types)")
        params["event_types"] = list(event_types)
    statement = f"""
        SELECT event_id, seq, xid::text AS xid, event_type, entity_type, entity_id, payload, occurred_at
        FROM outbox_events WHERE {" AND ".join(conditions)}
        ORDER BY xid, seq LIMIT :limit
    """  # noqa: S608 - conditions are fixed strings; values are bound
    return list(conn.execute(sa.text(statement), params))


class OutboxListener:
    """A connection of its own that listens for outbox commits. Waiting falls back to sleeping
    if it cannot listen; the relay's poll interval then bounds the lag."""

    def __init__(self, db: Database) -> None:
        url = sa.engine.make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        try:
            self._conn = psycopg.connect(url, autocommit=True)
            self._conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            log.warning("relay cannot LISTEN; polling only")
            self._conn = None

    def wait(self, seconds: float) -> None:
        """Return when an outbox commit is announced, or after `seconds`."""
        if self._conn is None:
            time.sleep(seconds)
            return
        try:
            for _ in self._conn.notifies(timeout=seconds, stop_after=1):
                pass
        except psycopg.Error:
            log.warning("relay lost its LISTEN connection; polling only")
            self.close()
            time.sleep(seconds)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
