"""A change, its audit record and its outbox event commit together or not at all."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from accrual.services import audit as audit_service
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor, unit_of_work
from accrual.store.constraints import AppendOnlyViolation
from accrual.store.database import Database
from tests.support import count_rows

NOW = dt.datetime(2026, 2, 1, 9, 30, tzinfo=dt.UTC)


def test_records_and_events_are_written_with_the_change(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    audit_before, events_before = count_rows(db, "audit_log", tid), count_rows(db, "outbox_events", tid)
    with unit_of_work(db, tenant_id=tid, actor=Actor.cli("ops"), now=NOW) as uow:
        uow.changed(
            "widget.priced",
            entity_type="widget",
            entity_id="w1",
            before=None,
            after={"price": Decimal("12.30"), "at": NOW, "id": uuid.UUID(int=7)},
        )
    assert count_rows(db, "audit_log", tid) == audit_before + 1
    assert count_rows(db, "outbox_events", tid) == events_before + 1
    with db.connect() as conn:
        row = conn.execute(
            sa.text(
                "select payload, occurred_at, event_type from outbox_events "
                "where tenant_id = :t and entity_id = 'w1'"
            ),
            {"t": tid},
        ).one()
    assert row.payload == {"price": "12.30", "at": NOW.isoformat(), "id": str(uuid.UUID(int=7))}
    assert row.occurred_at == NOW
    assert row.event_type == "widget.priced"
    (report,) = audit_service.verify_audit_chain(db, tenant_id=tid)
    assert report.intact


def test_a_failed_change_writes_nothing(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    audit_before, events_before = count_rows(db, "audit_log", tid), count_rows(db, "outbox_events", tid)

    class Boom(Exception):
        pass

    def change_then_fail() -> None:
        with unit_of_work(db, tenant_id=tid, actor=Actor.cli("ops"), now=NOW) as uow:
            uow.changed("widget.priced", entity_type="widget", entity_id="w2", before=None, after={"n": 1})
            raise Boom

    with pytest.raises(Boom):
        change_then_fail()
    assert count_rows(db, "audit_log", tid) == audit_before
    assert count_rows(db, "outbox_events", tid) == events_before


def test_floats_are_refused_before_anything_is_written(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    with pytest.raises(TypeError), unit_of_work(db, tenant_id=tid, actor=Actor.cli("ops"), now=NOW) as uow:
        uow.changed("widget.priced", entity_type="widget", entity_id="w3", before=None, after={"price": 12.3})


def test_naive_now_is_refused(db: Database, tenant: CreatedTenant) -> None:
    naive = dt.datetime(2026, 1, 1)  # noqa: DTZ001 - the point of the test
    uow = unit_of_work(db, tenant_id=tenant.tenant.tenant_id, actor=Actor.cli("ops"), now=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        uow.__enter__()


def test_concurrent_writers_keep_one_linear_chain(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(5):
                with unit_of_work(db, tenant_id=tid, actor=Actor.cli(f"w{n}"), now=NOW) as uow:
                    uow.record(
                        "widget.touched", entity_type="widget", entity_id=f"{n}-{i}", before=None, after={}
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (report,) = audit_service.verify_audit_chain(db, tenant_id=tid)
    assert report.intact
    assert report.records_checked == count_rows(db, "audit_log", tid)


def test_audit_rows_cannot_be_edited_through_a_service(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    with (
        pytest.raises(AppendOnlyViolation),
        unit_of_work(db, tenant_id=tid, actor=Actor.cli("x"), now=NOW) as uow,
    ):
        uow.conn.execute(
            sa.text("update audit_log set actor = 'someone else' where tenant_id = :t"), {"t": tid}
        )
