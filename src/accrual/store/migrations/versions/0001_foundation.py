"""Foundation: tenants, API keys, idempotency keys, audit log, outbox, test clocks.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


class _Xid8(sa.types.UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "xid8"


# Rows of these tables are facts: once written they may never change or disappear. The
# triggers refuse UPDATE, DELETE and TRUNCATE for every role; SQLSTATE AC001 lets the
# application tell this refusal from other errors.
REFUSE_CHANGE = """
CREATE FUNCTION accrual_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on %.% is refused: the table is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
END
$$;
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


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name=f"fk_{table}_tenant")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenants"),
        sa.CheckConstraint("length(name) between 1 and 200", name="ck_tenants_name_length"),
    )
    op.create_table(
        "api_keys",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("api_key_id", sa.Uuid, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("key_hash", sa.LargeBinary, nullable=False),
        sa.Column("scopes", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "api_key_id", name="pk_api_keys"),
        sa.UniqueConstraint("tenant_id", "key_hash", name="uq_api_keys_tenant_id_key_hash"),
        _tenant_fk("api_keys"),
        sa.CheckConstraint("length(name) between 1 and 200", name="ck_api_keys_name_length"),
        sa.CheckConstraint(
            "cardinality(scopes) > 0 and scopes <@ array['admin','write','read','ingest','finance']::text[]",
            name="ck_api_keys_known_scopes",
        ),
        sa.CheckConstraint("octet_length(key_hash) = 32", name="ck_api_keys_key_hash_sha256"),
    )
    op.create_index("ix_api_keys_key_hash", "api_keys", ["key_hash"])
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=False),
        sa.Column("request_method", sa.Text, nullable=False),
        sa.Column("request_path", sa.Text, nullable=False),
        sa.Column("request_hash", sa.LargeBinary, nullable=False),
        sa.Column("response_status", sa.Integer, nullable=False),
        sa.Column("response_headers", pg.JSONB, nullable=False),
        sa.Column("response_body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "idempotency_key", name="pk_idempotency_keys"),
        _tenant_fk("idempotency_keys"),
        sa.CheckConstraint(
            "length(idempotency_key) between 1 and 255", name="ck_idempotency_keys_key_length"
        ),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_table(
        "audit_log",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("entity_type", sa.Text, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=False),
        sa.Column("before", pg.JSONB, nullable=True),
        sa.Column("after", pg.JSONB, nullable=True),
        sa.Column("prev_hash", sa.LargeBinary, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "seq", name="pk_audit_log"),
        _tenant_fk("audit_log"),
        sa.CheckConstraint("seq >= 1", name="ck_audit_log_seq_positive"),
        sa.CheckConstraint(
            "octet_length(hash) = 32 and octet_length(prev_hash) = 32", name="ck_audit_log_sha256"
        ),
    )
    op.create_index("ix_audit_log_tenant_id_entity", "audit_log", ["tenant_id", "entity_type", "entity_id"])
    op.create_table(
        "outbox_events",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("entity_type", sa.Text, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=False),
        sa.Column("payload", pg.JSONB, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("xid", _Xid8(), nullable=False, server_default=sa.text("pg_current_xact_id()")),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", name="pk_outbox_events"),
        sa.UniqueConstraint("tenant_id", "seq", name="uq_outbox_events_tenant_id_seq"),
        _tenant_fk("outbox_events"),
    )
    op.create_index("ix_outbox_events_seq", "outbox_events", ["seq"])
    op.create_index(
        "ix_outbox_events_tenant_id_entity", "outbox_events", ["tenant_id", "entity_type", "entity_id", "seq"]
    )
    op.create_table(
        "test_clocks",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("test_clock_id", sa.Uuid, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("frozen_time", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "test_clock_id", name="pk_test_clocks"),
        _tenant_fk("test_clocks"),
        sa.CheckConstraint("length(name) between 1 and 200", name="ck_test_clocks_name_length"),
    )
    op.execute(REFUSE_CHANGE)
    _append_only("audit_log")
    _append_only("outbox_events")


def downgrade() -> None:
    for table in ("test_clocks", "outbox_events", "audit_log", "idempotency_keys", "api_keys", "tenants"):
        op.drop_table(table)
    op.execute("DROP FUNCTION accrual_refuse_change()")
