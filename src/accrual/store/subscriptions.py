"""Subscriptions, their history, scheduled changes and billing points."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrual.domain.errors import Conflict
from accrual.store import constraints
from accrual.store.database import array_param
from accrual.store.schema import billing_points, scheduled_changes, subscription_history, subscriptions


class SubscriptionExternalIdTaken(Conflict):
    title = "External id already in use"


constraints.register(
    "uq_subscriptions_tenant_id_external_id",
    lambda: SubscriptionExternalIdTaken(
        "a subscription with this external id already exists", field="/external_id"
    ),
)


class Busy(Exception):
    """The row is locked by another transaction right now."""


LOCK_NOT_AVAILABLE = "55P03"


def insert(conn: sa.Connection, values: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(subscriptions).values(dict(values)))


def get(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID | None = None,
    external_id: str | None = None,
    lock: str | None = None,
) -> sa.Row[Any] | None:
    """One subscription; `lock` "nowait" raises `Busy` if another transaction holds it, "wait" waits."""
    query = sa.select(subscriptions).where(subscriptions.c.tenant_id == tenant_id)
    if subscription_id is not None:
        query = query.where(subscriptions.c.subscription_id == subscription_id)
    if external_id is not None:
        query = query.where(subscriptions.c.external_id == external_id)
    if lock == "nowait":
        query = query.with_for_update(nowait=True)
    elif lock == "wait":
        query = query.with_for_update()
    if lock != "nowait":
        return conn.execute(query).first()
    try:
        # A savepoint, so a refused lock leaves the transaction usable (to report the state).
        with conn.begin_nested():
            return conn.execute(query).first()
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise Busy from exc
        raise


def update(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    conn.execute(
        sa.update(subscriptions)
        .where(subscriptions.c.tenant_id == tenant_id, subscriptions.c.subscription_id == subscription_id)
        .values(dict(values))
    )


def select_for_tenant(
    tenant_id: uuid.UUID, *, customer_id: uuid.UUID | None = None, status: str | None = None
) -> sa.Select[Any]:
    query = sa.select(subscriptions).where(subscriptions.c.tenant_id == tenant_id)
    if customer_id is not None:
        query = query.where(subscriptions.c.customer_id == customer_id)
    if status is not None:
        query = query.where(subscriptions.c.status == status)
    return query


def _scope(
    query: sa.Select[Any], *, tenant_id: uuid.UUID | None, test_clock_id: uuid.UUID | None
) -> sa.Select[Any]:
    # Written to match the two partial indexes: one for the real clock, one per test clock.
    if test_clock_id is None:
        return query.where(subscriptions.c.test_clock_id.is_(None), subscriptions.c.next_due_at.is_not(None))
    return query.where(
        subscriptions.c.tenant_id == tenant_id,
        subscriptions.c.test_clock_id == test_clock_id,
        subscriptions.c.next_due_at.is_not(None),
    )


def earliest_due(
    conn: sa.Connection, *, tenant_id: uuid.UUID | None, test_clock_id: uuid.UUID | None, until: dt.datetime
) -> dt.datetime | None:
    query = _scope(
        sa.select(sa.func.min(subscriptions.c.next_due_at)), tenant_id=tenant_id, test_clock_id=test_clock_id
    )
    due: dt.datetime | None = conn.execute(query.where(subscriptions.c.next_due_at <= until)).scalar_one()
    return due


def due_at_or_before(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID | None,
    test_clock_id: uuid.UUID | None,
    at: dt.datetime,
    limit: int,
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant, subscription) pairs with work due at or before `at`, earliest first, then oldest first."""
    query = _scope(
        sa.select(subscriptions.c.tenant_id, subscriptions.c.subscription_id),
        tenant_id=tenant_id,
        test_clock_id=test_clock_id,
    )
    rows = conn.execute(
        query.where(subscriptions.c.next_due_at <= at)
        .order_by(subscriptions.c.next_due_at, subscriptions.c.subscription_id)
        .limit(limit)
    )
    return [(row.tenant_id, row.subscription_id) for row in rows]


# --- history -------------------------------------------------------------------------------


def append_history(
    conn: sa.Connection,
    *,
    tenant_id: uuid.UUID,
    subscription_id: uuid.UUID,
    rows: Sequence[Mapping[str, Any]],
) -> int:
    """Append history rows in order; return the seq of the first (0 when there are none)."""
    if not rows:
        return 0
    last = conn.execute(
        sa.select(sa.func.coalesce(sa.func.max(subscription_history.c.seq), 0)).where(
            subscription_history.c.tenant_id == tenant_id,
            subscription_history.c.subscription_id == subscription_id,
        )
    ).scalar_one()
    conn.execute(
        sa.insert(subscription_history),
        [
            {"tenant_id": tenant_id, "subscription_id": subscription_id, "seq": last + i + 1, **row}
            for i, row in enumerate(rows)
        ],
    )
    return int(last) + 1


def history(conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID) -> list[sa.Row[Any]]:
    return list(
        conn.execute(
            sa.select(subscription_history)
            .where(
                subscription_history.c.tenant_id == tenant_id,
                subscription_history.c.subscription_id == subscription_id,
            )
            .order_by(subscription_history.c.seq)
        )
    )


# --- scheduled changes ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScheduledChange:
    scheduled_change_id: uuid.UUID
    subscription_id: uuid.UUID
    at_period_end: bool
    effective_at: dt.datetime
    plan_version_id: uuid.UUID
    quantity: int
    status: str
    created_at: dt.datetime
    created_by: str
    settled_at: dt.datetime | None

    @classmethod
    def of(cls, row: sa.Row[Any]) -> ScheduledChange:
        return cls(
            scheduled_change_id=row.scheduled_change_id,
            subscription_id=row.subscription_id,
            at_period_end=row.at_period_end,
            effective_at=row.effective_at,
            plan_version_id=row.plan_version_id,
            quantity=row.quantity,
            status=row.status,
            created_at=row.created_at,
            created_by=row.created_by,
            settled_at=row.settled_at,
        )


def insert_scheduled_change(conn: sa.Connection, values: Mapping[str, Any]) -> ScheduledChange:
    return ScheduledChange.of(
        conn.execute(sa.insert(scheduled_changes).values(dict(values)).returning(scheduled_changes)).one()
    )


def scheduled_changes_of(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID, pending_only: bool
) -> list[ScheduledChange]:
    query = sa.select(scheduled_changes).where(
        scheduled_changes.c.tenant_id == tenant_id, scheduled_changes.c.subscription_id == subscription_id
    )
    if pending_only:
        query = query.where(scheduled_changes.c.status == "scheduled")
    return [
        ScheduledChange.of(row)
        for row in conn.execute(
            query.order_by(scheduled_changes.c.effective_at, scheduled_changes.c.created_at)
        )
    ]


def settle_scheduled_change(
    conn: sa.Connection, *, tenant_id: uuid.UUID, scheduled_change_id: uuid.UUID, status: str, at: dt.datetime
) -> None:
    conn.execute(
        sa.update(scheduled_changes)
        .where(
            scheduled_changes.c.tenant_id == tenant_id,
            scheduled_changes.c.scheduled_change_id == scheduled_change_id,
        )
        .values(status=status, settled_at=at)
    )


# --- billing points ------------------------------------------------------------------------


def insert_billing_point(conn: sa.Connection, values: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(billing_points).values(dict(values)))


def billing_points_of(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_id: uuid.UUID
) -> list[sa.Row[Any]]:
    return list(
        conn.execute(
            sa.select(billing_points)
            .where(
                billing_points.c.tenant_id == tenant_id, billing_points.c.subscription_id == subscription_id
            )
            .order_by(billing_points.c.at, billing_points.c.created_at)
        )
    )


def lock_many(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, sa.Row[Any]]:
    """Lock these subscriptions (in id order, so two runs never deadlock) and return them by id."""
    rows = conn.execute(
        sa.select(subscriptions)
        .where(
            subscriptions.c.tenant_id == tenant_id,
            subscriptions.c.subscription_id.in_(sorted(set(subscription_ids))),
        )
        .order_by(subscriptions.c.subscription_id)
        .with_for_update()
    )
    return {row.subscription_id: row for row in rows}


def close_usage(conn: sa.Connection, *, tenant_id: uuid.UUID, until: Mapping[uuid.UUID, dt.datetime]) -> None:
    """Move subscriptions' `usage_closed_until` forward (never back), in one statement."""
    if not until:
        return
    pairs = sorted(until.items())
    conn.execute(
        sa.text(
            "update subscriptions s set usage_closed_until = v.until "
            "from unnest(cast(:subs as uuid[]), cast(:until as timestamptz[])) v(subscription_id, until) "
            "where s.tenant_id = :t and s.subscription_id = v.subscription_id "
            "and (s.usage_closed_until is null or s.usage_closed_until < v.until)"
        ),
        {
            "t": tenant_id,
            "subs": array_param([s for s, _ in pairs]),
            "until": array_param([u for _, u in pairs]),
        },
    )


def pending_changes_of_many(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ScheduledChange]]:
    """`scheduled_changes_of(pending_only=True)` for many subscriptions, in one statement."""
    found: dict[uuid.UUID, list[ScheduledChange]] = {sid: [] for sid in subscription_ids}
    rows = conn.execute(
        sa.select(scheduled_changes)
        .where(
            scheduled_changes.c.tenant_id == tenant_id,
            scheduled_changes.c.subscription_id.in_(list(subscription_ids)),
            scheduled_changes.c.status == "scheduled",
        )
        .order_by(scheduled_changes.c.effective_at, scheduled_changes.c.created_at)
    )
    for row in rows:
        found[row.subscription_id].append(ScheduledChange.of(row))
    return found


def last_history_seqs(
    conn: sa.Connection, *, tenant_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    rows = conn.execute(
        sa.select(subscription_history.c.subscription_id, sa.func.max(subscription_history.c.seq))
        .where(
            subscription_history.c.tenant_id == tenant_id,
            subscription_history.c.subscription_id.in_(list(subscription_ids)),
        )
        .group_by(subscription_history.c.subscription_id)
    )
    return {sid: int(seq) for sid, seq in rows}


def update_many(
    conn: sa.Connection, *, tenant_id: uuid.UUID, updates: Sequence[tuple[uuid.UUID, Mapping[str, Any]]]
) -> None:
    """Many subscriptions' updates, each setting the same columns, as one pipelined statement."""
    if not updates:
        return
    columns = list(updates[0][1])
    statement = (
        sa.update(subscriptions)
        .where(
            subscriptions.c.tenant_id == sa.bindparam("key_tenant_id"),
            subscriptions.c.subscription_id == sa.bindparam("key_subscription_id"),
        )
        .values({c: sa.bindparam(c, type_=subscriptions.c[c].type) for c in columns})
    )
    conn.execute(
        statement,
        [{"key_tenant_id": tenant_id, "key_subscription_id": sid, **dict(values)} for sid, values in updates],
    )
