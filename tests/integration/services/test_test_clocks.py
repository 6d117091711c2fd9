"""Advancing a test clock runs every piece of due work, earliest first, as of its instant."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from accrual.services import test_clocks
from accrual.services.due_work import ClockScope, DueWorkRegistry, DueWorkStuck
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor, unit_of_work
from accrual.store.database import Database, TransactionSource

T0 = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)
ACTOR = Actor.cli("tests")


class Reminders:
    """A real due-work provider over a table: each reminder runs once; some repeat daily."""

    def __init__(self, name: str) -> None:
        self.name = name

    def next_due(self, conn: sa.Connection, *, scope: ClockScope, until: dt.datetime) -> dt.datetime | None:
        due: dt.datetime | None = conn.execute(
            sa.text(
                "select min(due_at) from test_reminders where provider = :p and clock_id = :c "
                "and ran_at is null and due_at <= :u"
            ),
            {"p": self.name, "c": scope.test_clock_id, "u": until},
        ).scalar_one()
        return due

    def run_due(self, db: TransactionSource, *, scope: ClockScope, at: dt.datetime) -> int:
        assert scope.tenant_id is not None
        with unit_of_work(db, tenant_id=scope.tenant_id, actor=Actor.system(self.name), now=at) as uow:
            rows = uow.conn.execute(
                sa.text(
                    "update test_reminders set ran_at = :at where provider = :p and clock_id = :c "
                    "and ran_at is null and due_at <= :at returning id, repeat_daily, due_at"
                ),
                {"p": self.name, "c": scope.test_clock_id, "at": at},
            ).all()
            for row in rows:
                uow.emit("reminder.ran", entity_type="reminder", entity_id=str(row.id), payload={"at": at})
                if row.repeat_daily:
                    add_reminder(
                        uow.conn, self.name, scope.test_clock_id, row.due_at + dt.timedelta(days=1), True
                    )
            return len(rows)


def add_reminder(
    conn: sa.Connection, provider: str, clock_id: object, due: dt.datetime, repeat: bool = False
) -> None:
    conn.execute(
        sa.text(
            "insert into test_reminders (id, provider, clock_id, due_at, repeat_daily) "
            "values (:i, :p, :c, :d, :r)"
        ),
        {"i": uuid.uuid4(), "p": provider, "c": clock_id, "d": due, "r": repeat},
    )


@pytest.fixture(scope="module")
def reminders_table(db: Database) -> Iterator[None]:
    with db.transaction() as conn:
        conn.execute(
            sa.text(
                "create table if not exists test_reminders (id uuid primary key, provider text not null, "
                "clock_id uuid not null, due_at timestamptz not null, repeat_daily boolean not null, "
                "ran_at timestamptz)"
            )
        )
    yield
    with db.transaction() as conn:
        conn.execute(sa.text("drop table test_reminders"))


@pytest.fixture
def clock(db: Database, tenant: CreatedTenant, reminders_table: None) -> test_clocks.clock_store.TestClock:
    return test_clocks.create_test_clock(
        db, tenant_id=tenant.tenant.tenant_id, name="rehearsal", frozen_time=T0, actor=ACTOR, now=T0
    )


def ran(db: Database, clock_id: object) -> list[tuple[str, dt.datetime, dt.datetime]]:
    with db.connect() as conn:
        return [
            (r.provider, r.due_at, r.ran_at)
            for r in conn.execute(
                sa.text(
                    "select provider, due_at, ran_at from test_reminders "
                    "where clock_id = :c and ran_at is not null order by ran_at, provider"
                ),
                {"c": clock_id},
            )
        ]


def test_advance_runs_due_work_in_time_order_across_providers(
    db: Database, tenant: CreatedTenant, clock: test_clocks.clock_store.TestClock
) -> None:
    registry = DueWorkRegistry((Reminders("a"), Reminders("b")))
    cid = clock.test_clock_id
    with db.transaction() as conn:
        add_reminder(conn, "b", cid, T0 + dt.timedelta(hours=3))
        add_reminder(conn, "a", cid, T0 + dt.timedelta(hours=5))
        add_reminder(conn, "a", cid, T0 + dt.timedelta(hours=1), repeat=True)  # daily: +1 h, +25 h, +49 h
        add_reminder(conn, "b", cid, T0 + dt.timedelta(days=30))  # beyond the target
    advance = test_clocks.advance_test_clock(
        db,
        tenant_id=tenant.tenant.tenant_id,
        test_clock_id=cid,
        to=T0 + dt.timedelta(days=2, hours=2),
        registry=registry,
        actor=ACTOR,
        now=T0,
    )
    hours = [int((s.at - T0).total_seconds() // 3600) for s in advance.steps]
    assert hours == [1, 3, 5, 25, 49]
    assert [s.provider for s in advance.steps] == ["a", "b", "a", "a", "a"]
    # Each piece of work ran as of the instant it fell due.
    assert all(due == ran_at for _, due, ran_at in ran(db, cid))
    assert advance.clock.frozen_time == T0 + dt.timedelta(days=2, hours=2)
    # Advancing again to the same instant finds nothing due: an advance is idempotent.
    again = test_clocks.advance_test_clock(
        db,
        tenant_id=tenant.tenant.tenant_id,
        test_clock_id=cid,
        to=T0 + dt.timedelta(days=2, hours=2),
        registry=registry,
        actor=ACTOR,
        now=T0,
    )
    assert again.steps == []


def test_same_instant_runs_in_registration_order(
    db: Database, tenant: CreatedTenant, clock: test_clocks.clock_store.TestClock
) -> None:
    registry = DueWorkRegistry((Reminders("b"), Reminders("a")))
    with db.transaction() as conn:
        add_reminder(conn, "a", clock.test_clock_id, T0 + dt.timedelta(hours=1))
        add_reminder(conn, "b", clock.test_clock_id, T0 + dt.timedelta(hours=1))
    advance = test_clocks.advance_test_clock(
        db,
        tenant_id=tenant.tenant.tenant_id,
        test_clock_id=clock.test_clock_id,
        to=T0 + dt.timedelta(hours=2),
        registry=registry,
        actor=ACTOR,
        now=T0,
    )
    assert [s.provider for s in advance.steps] == ["b", "a"]


def test_clocks_only_move_forward(
    db: Database, tenant: CreatedTenant, clock: test_clocks.clock_store.TestClock
) -> None:
    with pytest.raises(test_clocks.TestClockCannotGoBack):
        test_clocks.advance_test_clock(
            db,
            tenant_id=tenant.tenant.tenant_id,
            test_clock_id=clock.test_clock_id,
            to=T0 - dt.timedelta(seconds=1),
            registry=DueWorkRegistry(),
            actor=ACTOR,
            now=T0,
        )


def test_other_tenants_clock_is_not_found(
    db: Database, other_tenant: CreatedTenant, clock: test_clocks.clock_store.TestClock
) -> None:
    with pytest.raises(test_clocks.TestClockNotFound):
        test_clocks.advance_test_clock(
            db,
            tenant_id=other_tenant.tenant.tenant_id,
            test_clock_id=clock.test_clock_id,
            to=T0,
            registry=DueWorkRegistry(),
            actor=ACTOR,
            now=T0,
        )


def test_a_second_advance_while_one_runs_is_refused(
    db: Database, tenant: CreatedTenant, clock: test_clocks.clock_store.TestClock
) -> None:
    started, release = threading.Event(), threading.Event()

    class Slow(Reminders):
        def run_due(self, db: TransactionSource, *, scope: ClockScope, at: dt.datetime) -> int:
            started.set()
            release.wait(10)
            return super().run_due(db, scope=scope, at=at)

    with db.transaction() as conn:
        add_reminder(conn, "slow", clock.test_clock_id, T0 + dt.timedelta(hours=1))
    kwargs = {
        "tenant_id": tenant.tenant.tenant_id,
        "test_clock_id": clock.test_clock_id,
        "to": T0 + dt.timedelta(hours=2),
        "registry": DueWorkRegistry((Slow("slow"),)),
        "actor": ACTOR,
        "now": T0,
    }
    first = threading.Thread(target=lambda: test_clocks.advance_test_clock(db, **kwargs))  # type: ignore[arg-type]
    first.start()
    assert started.wait(10)
    try:
        with pytest.raises(test_clocks.TestClockAdvancing):
            test_clocks.advance_test_clock(db, **kwargs)  # type: ignore[arg-type]
    finally:
        release.set()
        first.join()


def test_a_provider_that_does_nothing_cannot_loop_forever(
    db: Database, tenant: CreatedTenant, clock: test_clocks.clock_store.TestClock
) -> None:
    class Liar(Reminders):
        def run_due(self, db: TransactionSource, *, scope: ClockScope, at: dt.datetime) -> int:
            return 0

    with db.transaction() as conn:
        add_reminder(conn, "liar", clock.test_clock_id, T0 + dt.timedelta(hours=1))
    with pytest.raises(DueWorkStuck):
        test_clocks.advance_test_clock(
            db,
            tenant_id=tenant.tenant.tenant_id,
            test_clock_id=clock.test_clock_id,
            to=T0 + dt.timedelta(hours=2),
            registry=DueWorkRegistry((Liar("liar"),)),
            actor=ACTOR,
            now=T0,
        )


def test_real_clock_work_runs_through_the_same_providers(db: Database, reminders_table: None) -> None:
    class RealReminders(Reminders):
        def next_due(
            self, conn: sa.Connection, *, scope: ClockScope, until: dt.datetime
        ) -> dt.datetime | None:
            assert scope.is_real
            return super().next_due(conn, scope=ClockScope(test_clock_id=REAL), until=until)

        def run_due(self, db: TransactionSource, *, scope: ClockScope, at: dt.datetime) -> int:
            with db.transaction() as conn:
                return len(
                    conn.execute(
                        sa.text(
                            "update test_reminders set ran_at = :at where clock_id = :c and ran_at is null "
                            "and due_at <= :at returning id"
                        ),
                        {"c": REAL, "at": at},
                    ).all()
                )

    REAL = uuid.uuid4()
    with db.transaction() as conn:
        add_reminder(conn, "real", REAL, T0 - dt.timedelta(minutes=5))
        add_reminder(conn, "real", REAL, T0 + dt.timedelta(minutes=5))
    steps = test_clocks.run_real_clock_due_work(
        db, registry=DueWorkRegistry((RealReminders("real"),)), now=T0
    )
    assert [(s.at, s.items) for s in steps] == [(T0 - dt.timedelta(minutes=5), 1)]


def test_registry_refuses_two_providers_with_one_name() -> None:
    registry = DueWorkRegistry((Reminders("a"),))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Reminders("a"))
