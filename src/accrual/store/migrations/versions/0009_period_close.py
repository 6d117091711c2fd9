"""Accounting periods: a closed month takes no postings.

Revision ID: 0009_period_close
Revises: 0008_ledger
Create Date: 2026-11-25

A tenant closes a calendar month (in its time zone) once it has ended, and may reopen it with a
reason; each close and reopen is a row of `accounting_period_changes`, append-only, and a
month's state is its latest change. A statement trigger on `ledger_entries` refuses any entry
effective in a closed month (SQLSTATE AC003), holding a shared per-tenant advisory lock that a
close takes exclusively, so a close waits for postings in flight and the other way round. The
services post a fact that falls in a closed month at the start of the next open one, keeping
the fact's own instant in `original_effective_at`.
"""

from __future__ import annotations

from alembic import op

revision = "0009_period_close"
down_revision = "0008_ledger"
branch_labels = None
depends_on = None

TABLES = """
ALTER TABLE ledger_entries ADD COLUMN original_effective_at timestamptz;

CREATE TABLE accounting_period_changes (
    tenant_id uuid NOT NULL,
    change_id uuid NOT NULL,
    month date NOT NULL,
    action text NOT NULL,
    reason text,
    actor text NOT NULL,
    changed_at timestamptz NOT NULL,
    CONSTRAINT pk_accounting_period_changes PRIMARY KEY (tenant_id, change_id),
    CONSTRAINT fk_accounting_period_changes_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id),
    CONSTRAINT ck_accounting_period_changes_first_of_month CHECK (extract(day FROM month) = 1),
    CONSTRAINT ck_accounting_period_changes_known_action CHECK (action IN ('close', 'reopen')),
    CONSTRAINT ck_accounting_period_changes_reopen_has_reason CHECK (action = 'close' OR reason IS NOT NULL)
);
CREATE INDEX ix_accounting_period_changes_tenant_id_month
    ON accounting_period_changes (tenant_id, month, change_id);
"""

OPEN_ONLY = """
CREATE FUNCTION accrual_ledger_period_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- 5260626 = 0x504552 ("PER"), the namespace period changes lock exclusively.
    PERFORM pg_advisory_xact_lock_shared(5260626, hashtext(t.tenant_id::text))
       FROM (SELECT DISTINCT tenant_id FROM new_entries) t;
    IF EXISTS (
        SELECT 1
          FROM new_entries n
          JOIN tenants t ON t.tenant_id = n.tenant_id
          JOIN LATERAL (SELECT c.action FROM accounting_period_changes c
                         WHERE c.tenant_id = n.tenant_id
                           AND c.month = date_trunc('month', n.effective_at AT TIME ZONE t.timezone)::date
                         ORDER BY c.change_id DESC LIMIT 1) latest ON true
         WHERE latest.action = 'close') THEN
        RAISE EXCEPTION 'a ledger entry is effective in a closed accounting period'
            USING ERRCODE = 'AC003';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_period_open AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION accrual_ledger_period_open();
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(OPEN_ONLY)
    op.execute(
        "CREATE TRIGGER accounting_period_changes_append_only BEFORE UPDATE OR DELETE "
        "ON accounting_period_changes FOR EACH ROW EXECUTE FUNCTION accrual_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER accounting_period_changes_no_truncate BEFORE TRUNCATE ON accounting_period_changes "
        "FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER ledger_entries_period_open ON ledger_entries")
    op.execute("DROP FUNCTION accrual_ledger_period_open()")
    op.execute("DROP TABLE accounting_period_changes")
    op.execute("ALTER TABLE ledger_entries DROP COLUMN original_effective_at")
