"""The double-entry ledger: entries and their lines, balanced and append-only by the database.

Revision ID: 0008_ledger
Revises: 0007_billing_queue
Create Date: 2026-11-25

An entry is one financial fact (an invoice finalized, a payment, a credit note, a void, a
write-off), posted in the transaction of its source; its kind and source (the invoice,
payment or credit note) are unique per tenant, so a replay posts nothing twice. Its lines
are amounts in integer minor units on the tenant's accounts, debits positive and credits
negative. Only the transaction that wrote an entry can write its lines (a foreign key on the
entry and the writing transaction's id), and a deferred constraint trigger checks at commit
that every entry has lines that sum to zero per currency, whatever order the transaction
wrote them in (SQLSTATE AC002 otherwise); row and statement triggers refuse any UPDATE,
DELETE or TRUNCATE of either table.
"""

from __future__ import annotations

from alembic import op

revision = "0008_ledger"
down_revision = "0007_billing_queue"
branch_labels = None
depends_on = None

ACCOUNTS = (
    "accounts_receivable",
    "cash",
    "revenue",
    "deferred_revenue",
    "unbilled_receivable",
    "tax_payable",
    "customer_credit",
    "contra_revenue",
    "bad_debt",
)

TABLES = f"""
CREATE TABLE ledger_entries (
    tenant_id uuid NOT NULL,
    entry_id uuid NOT NULL,
    kind text NOT NULL,
    effective_at timestamptz NOT NULL,
    customer_id uuid,
    invoice_id uuid,
    source_id uuid NOT NULL,
    description text NOT NULL,
    created_at timestamptz NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT pk_ledger_entries PRIMARY KEY (tenant_id, entry_id),
    CONSTRAINT uq_ledger_entries_tenant_id_entry_id_xid UNIQUE (tenant_id, entry_id, xid),
    CONSTRAINT fk_ledger_entries_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id),
    CONSTRAINT uq_ledger_entries_tenant_id_kind_source_id UNIQUE (tenant_id, kind, source_id),
    CONSTRAINT ck_ledger_entries_known_kind CHECK (kind IN
        ('invoice_finalized', 'payment', 'credit_note', 'invoice_voided', 'invoice_written_off'))
);
CREATE INDEX ix_ledger_entries_tenant_id_invoice_id ON ledger_entries (tenant_id, invoice_id);

CREATE TABLE ledger_lines (
    tenant_id uuid NOT NULL,
    entry_id uuid NOT NULL,
    line_no integer NOT NULL,
    account text NOT NULL,
    currency text NOT NULL,
    amount bigint NOT NULL,
    invoice_line_no integer,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT pk_ledger_lines PRIMARY KEY (tenant_id, entry_id, line_no),
    CONSTRAINT fk_ledger_lines_entry FOREIGN KEY (tenant_id, entry_id, xid)
        REFERENCES ledger_entries (tenant_id, entry_id, xid),
    CONSTRAINT ck_ledger_lines_known_account CHECK (account IN ({", ".join(f"'{a}'" for a in ACCOUNTS)})),
    CONSTRAINT ck_ledger_lines_not_zero CHECK (amount <> 0)
);
"""

BALANCED = """
CREATE FUNCTION accrual_ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_lines l
                    WHERE l.tenant_id = NEW.tenant_id AND l.entry_id = NEW.entry_id) THEN
        RAISE EXCEPTION 'ledger entry % has no lines', NEW.entry_id USING ERRCODE = 'AC002';
    END IF;
    SELECT string_agg(currency || ' ' || total, ', ') INTO unbalanced
      FROM (SELECT l.currency, sum(l.amount) AS total FROM ledger_lines l
             WHERE l.tenant_id = NEW.tenant_id AND l.entry_id = NEW.entry_id
             GROUP BY l.currency HAVING sum(l.amount) <> 0) off;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger entry % does not balance: % off', NEW.entry_id, unbalanced
            USING ERRCODE = 'AC002';
    END IF;
    RETURN NULL;
END $$;

-- Checked at commit, once per entry: its lines are all written by then, since a line can only
-- be written by the transaction that wrote its entry (the foreign key includes the writing
-- transaction's id, which is the top-level one even inside a savepoint).
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION accrual_ledger_entry_balanced();
"""


def _append_only(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION accrual_refuse_change()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change()"
    )


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(BALANCED)
    _append_only("ledger_entries")
    _append_only("ledger_lines")


def downgrade() -> None:
    op.execute("DROP TABLE ledger_lines")
    op.execute("DROP TABLE ledger_entries")
    op.execute("DROP FUNCTION accrual_ledger_entry_balanced()")
