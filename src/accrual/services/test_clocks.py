"""Test clocks: create one at an instant, then advance it and run everything that falls due."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid

import sqlalchemy as sa

from accrual.domain.clock import require_aware
from accrual.domain.errors import Conflict, InvalidInput, NotFound
from accrual.services.due_work import ClockScope, DueWorkProvider, DueWorkRegistry, DueWorkStuck
from accrual.services.unit_of_work import Actor, read_only, unit_of_work
from accrual.store import ids
from accrual.store import test_clocks as clock_store
from accrual.store.database import Database, TransactionSource
from accrual.store.pagination import Page, fetch_page

_ADVANCE_LOCK_NAMESPACE = 0x43_4C_4B  # "CLK"


class TestClockNotFound(NotFound):
    __test__ = False
    title = "Test clock not found"


class TestClockAdvancing(Conflict):
    __test__ = False
    title = "Test clock is already advancing"


class TestClockCannotGoBack(InvalidInput):
    __test__ = False
    title = "Test clocks only move forward"


@dataclasses.dataclass(frozen=True)
class AdvanceStep:
    provider: str
    at: dt.datetime
    items: int


@dataclasses.dataclass(frozen=True)
class Advance:
    """What an advance did: the clock after it, and each step of due work it ran, in order."""

    clock: clock_store.TestClock
    steps: list[AdvanceStep]


def _validate_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("name must be 1 to 200 characters", field="/name")
    return name


def create_test_clock(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    name: str,
    frozen_time: dt.datetime,
    actor: Actor,
    now: dt.datetime,
) -> clock_store.TestClock:
    """Create a test clock stopped at `frozen_time`."""
    clock = clock_store.TestClock(
        tenant_id=tenant_id,
        test_clock_id=ids.new_id(),
        name=_validate_name(name),
        frozen_time=require_aware(frozen_time, name="frozen_time"),
        created_at=now,
    )
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        clock_store.insert(uow.conn, clock)
        uow.changed(
            "test_clock.created",
            entity_type="test_clock",
            entity_id=str(clock.test_clock_id),
            before=None,
            after=clock.snapshot(),
        )
    return clock


def get_test_clock(
    db: TransactionSource, *, tenant_id: uuid.UUID, test_clock_id: uuid.UUID
) -> clock_store.TestClock:
    with read_only(db) as conn:
        clock = clock_store.get(conn, tenant_id=tenant_id, test_clock_id=test_clock_id)
    if clock is None:
        raise TestClockNotFound(f"no test clock {test_clock_id}")
    return clock


def list_test_clocks(
    db: TransactionSource, *, tenant_id: uuid.UUID, cursor: str | None, limit: int
) -> Page[clock_store.TestClock]:
    query = clock_store.select_for_tenant(tenant_id)
    with read_only(db) as conn:
        return fetch_page(
            conn,
            query,
            query.selected_columns.test_clock_id,
            cursor=cursor,
            limit=limit,
            descending=True,
            to_item=clock_store.clock_from_row,
            key_of=lambda c: c.test_clock_id,
            parse_key=uuid.UUID,
        )


def _require(clock: clock_store.TestClock | None) -> clock_store.TestClock:
    if clock is None:
        # Test clocks are never deleted; one seen at the start of an advance is still there.
        raise TestClockNotFound("the test clock disappeared during the advance")
    return clock


def _advance_lock_key(test_clock_id: uuid.UUID) -> int:
    return int.from_bytes(hashlib.sha256(test_clock_id.bytes).digest()[:4], "big", signed=True)


def _run_step(db: Database, provider: DueWorkProvider, *, scope: ClockScope, at: dt.datetime) -> AdvanceStep:
    items = provider.run_due(db, scope=scope, at=at)
    if items <= 0:
        raise DueWorkStuck(f"{provider.name} reported work due at {at.isoformat()} but did none")
    return AdvanceStep(provider=provider.name, at=at, items=items)


def advance_test_clock(
    db: Database,
    *,
    tenant_id: uuid.UUID,
    test_clock_id: uuid.UUID,
    to: dt.datetime,
    registry: DueWorkRegistry,
    actor: Actor,
    now: dt.datetime,
    including_target: bool = True,
) -> Advance:
    """Move the clock forward to `to`, running all work that falls due on the way, earliest first.

    With `including_target` false, work due exactly at `to` is left for the next advance: the
    clock stops at the instant, before it (so something can happen at a boundary, before the
    boundary's own work).

    Each piece of due work runs as of the instant it falls due, in transactions of its own,
    so a crash part-way leaves the clock at the last instant reached and the next advance
    resumes from there. Raises `TestClockNotFound`, `TestClockCannotGoBack` if `to` is before
    the clock's time, and `TestClockAdvancing` if another advance of this clock is running.
    """
    target = require_aware(to, name="to")
    scope = ClockScope(tenant_id=tenant_id, test_clock_id=test_clock_id)
    steps: list[AdvanceStep] = []
    with db.connect() as lock_conn:
        # A session lock on its own connection marks the advance as running until it ends,
        # whatever happens to the transactions the due work opens.
        got = lock_conn.execute(
            sa.select(sa.func.pg_try_advisory_lock(_ADVANCE_LOCK_NAMESPACE, _advance_lock_key(test_clock_id)))
        ).scalar_one()
        lock_conn.commit()
        if not got:
            raise TestClockAdvancing(f"test clock {test_clock_id} is being advanced by another request")
        try:
            start = get_test_clock(db, tenant_id=tenant_id, test_clock_id=test_clock_id)
            if target < start.frozen_time:
                raise TestClockCannotGoBack(
                    f"the clock is at {start.frozen_time.isoformat()}; "
                    f"it cannot go back to {target.isoformat()}",
                    field="/frozen_time",
                )
            until = target if including_target else target - dt.timedelta(microseconds=1)
            while True:
                with db.transaction() as conn:
                    found = registry.earliest(conn, scope=scope, until=until)
                    if found is None:
                        break
                    provider, due = found
                    current = _require(
                        clock_store.get(conn, tenant_id=tenant_id, test_clock_id=test_clock_id)
                    )
                    # Work already overdue (backdated, or left by a crash) runs as of when it fell
                    # due; the clock itself never moves back.
                    clock_store.set_frozen_time(
                        conn,
                        tenant_id=tenant_id,
                        test_clock_id=test_clock_id,
                        frozen_time=max(due, current.frozen_time),
                    )
                steps.append(_run_step(db, provider, scope=scope, at=due))
            with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
                _require(
                    clock_store.get(
                        uow.conn, tenant_id=tenant_id, test_clock_id=test_clock_id, for_update=True
                    )
                )
                after = clock_store.set_frozen_time(
                    uow.conn, tenant_id=tenant_id, test_clock_id=test_clock_id, frozen_time=target
                )
                uow.changed(
                    "test_clock.advanced",
                    entity_type="test_clock",
                    entity_id=str(test_clock_id),
                    before=start.snapshot(),
                    after=after.snapshot(),
                )
        finally:
            lock_conn.execute(
                sa.select(
                    sa.func.pg_advisory_unlock(_ADVANCE_LOCK_NAMESPACE, _advance_lock_key(test_clock_id))
                )
            )
            lock_conn.commit()
    return Advance(clock=after, steps=steps)


def run_real_clock_due_work(
    db: Database, *, registry: DueWorkRegistry, now: dt.datetime
) -> list[AdvanceStep]:
    """Run everything due on the real clock at or before `now`, earliest first (the worker's tick)."""
    scope = ClockScope.real()
    steps: list[AdvanceStep] = []
    while True:
        with db.transaction() as conn:
            found = registry.earliest(conn, scope=scope, until=now)
        if found is None:
            return steps
        provider, due = found
        steps.append(_run_step(db, provider, scope=scope, at=due))
