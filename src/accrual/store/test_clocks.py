"""Test clocks: stored instants that only move when advanced."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

from accrual.store.schema import test_clocks


@dataclasses.dataclass(frozen=True)
class TestClock:
    __test__ = False  # not a pytest test class

    tenant_id: uuid.UUID
    test_clock_id: uuid.UUID
    name: str
    frozen_time: dt.datetime
    created_at: dt.datetime

    def snapshot(self) -> dict[str, Any]:
        return {
            "test_clock_id": str(self.test_clock_id),
            "name": self.name,
            "frozen_time": self.frozen_time.isoformat(),
        }


def clock_from_row(row: sa.Row[Any]) -> TestClock:
    return TestClock(
        tenant_id=row.tenant_id,
        test_clock_id=row.test_clock_id,
        name=row.name,
        frozen_time=row.frozen_time,
        created_at=row.created_at,
    )


def insert(conn: sa.Connection, clock: TestClock) -> None:
    conn.execute(sa.insert(test_clocks).values(dataclasses.asdict(clock)))


def get(
    conn: sa.Connection, *, tenant_id: uuid.UUID, test_clock_id: uuid.UUID, for_update: bool = False
) -> TestClock | None:
    query = sa.select(test_clocks).where(
        test_clocks.c.tenant_id == tenant_id, test_clocks.c.test_clock_id == test_clock_id
    )
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return clock_from_row(row) if row is not None else None


def set_frozen_time(
    conn: sa.Connection, *, tenant_id: uuid.UUID, test_clock_id: uuid.UUID, frozen_time: dt.datetime
) -> TestClock:
    row = conn.execute(
        sa.update(test_clocks)
        .where(test_clocks.c.tenant_id == tenant_id, test_clocks.c.test_clock_id == test_clock_id)
        .values(frozen_time=frozen_time)
        .returning(test_clocks)
    ).one()
    return clock_from_row(row)


def select_for_tenant(tenant_id: uuid.UUID) -> sa.Select[Any]:
    return sa.select(test_clocks).where(test_clocks.c.tenant_id == tenant_id)
