"""Tampering with the audit log, even as a superuser bypassing the triggers, is detected."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from accrual.services import audit as audit_service
from accrual.services.tenants import CreatedTenant
from accrual.store.database import Database


@contextlib.contextmanager
def triggers_bypassed(db: Database) -> Iterator[sa.Connection]:
    """A superuser session with triggers off: what an attacker with database access could do."""
    with db.transaction() as conn:
        conn.execute(sa.text("set local session_replication_role = replica"))
        yield conn


def tamper(db: Database, tenant_id: object, seq: int, sql_set: str) -> None:
    with triggers_bypassed(db) as conn:
        conn.execute(
            sa.text(f"update audit_log set {sql_set} where tenant_id = :t and seq = :s"),
            {"t": tenant_id, "s": seq},
        )


def test_untouched_chain_is_intact(db: Database, tenant: CreatedTenant) -> None:
    (report,) = audit_service.verify_audit_chain(db, tenant_id=tenant.tenant.tenant_id)
    assert report.intact
    assert report.records_checked == 2  # tenant.created, api_key.created


def test_edited_contents_are_named(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    tamper(db, tid, 1, "after = jsonb_set(after, '{name}', '\"Evil Corp\"')")
    (report,) = audit_service.verify_audit_chain(db, tenant_id=tid)
    assert report.first_break is not None
    assert report.first_break.seq == 1
    assert "contents" in report.first_break.reason


def test_deleted_record_is_named(db: Database, tenant: CreatedTenant) -> None:
    tid = tenant.tenant.tenant_id
    with triggers_bypassed(db) as conn:
        conn.execute(sa.text("delete from audit_log where tenant_id = :t and seq = 1"), {"t": tid})
    (report,) = audit_service.verify_audit_chain(db, tenant_id=tid)
    assert report.first_break is not None
    assert report.first_break.seq == 2


def test_other_tenants_are_unaffected(
    db: Database, tenant: CreatedTenant, other_tenant: CreatedTenant
) -> None:
    tamper(db, tenant.tenant.tenant_id, 2, "actor = 'cli:mallory'")
    (mine,) = audit_service.verify_audit_chain(db, tenant_id=tenant.tenant.tenant_id)
    (theirs,) = audit_service.verify_audit_chain(db, tenant_id=other_tenant.tenant.tenant_id)
    assert mine.first_break is not None
    assert mine.first_break.seq == 2
    assert theirs.intact
