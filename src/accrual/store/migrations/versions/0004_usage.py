"""Usage: idempotent event ids, time-partitioned events, quarantine, hourly rollups.

Revision ID: 0004_usage
Revises: 0003_subscriptions
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004_usage"
down_revision = "0003_subscriptions"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# Event ids are opaque: compared byte by byte (COLLATE "C"), which is faster in every index that
# holds them and is the order `latest` breaks timestamp ties by.
ID_TEXT = sa.Text(collation="C")

# Usage events are partitioned by month of their timestamp (partitions are created ahead by the
# worker and on demand by ingestion). Each records its hourly rollup bucket, on its subscription's
# grid, so rolling up needs no join. Their primary key doubles as the aggregation index, and a
# BRIN index on the writing transaction's id lets the rollup worker and the fresh tail find recent
# rows cheaply. Event ids are unique per tenant for ever in usage_event_ids: a partitioned
# table's unique keys must include the partition key, which would only make them unique per month.
USAGE_EVENTS = """
CREATE TABLE usage_events (
    tenant_id uuid NOT NULL,
    subscription_id uuid NOT NULL,
    meter_id uuid NOT NULL,
    ts timestamptz NOT NULL,
    bucket timestamptz NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    properties jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    late boolean NOT NULL,
    xact bigint NOT NULL DEFAULT (pg_current_xact_id()::text)::bigint,
    CONSTRAINT pk_usage_events PRIMARY KEY (tenant_id, subscription_id, meter_id, ts, event_id)
) PARTITION BY RANGE (ts);
CREATE INDEX ix_usage_events_xact ON usage_events USING brin (xact) WITH (pages_per_range = 32);
CREATE TRIGGER usage_events_append_only BEFORE UPDATE OR DELETE ON usage_events
    FOR EACH ROW EXECUTE FUNCTION accrual_refuse_change();
CREATE TRIGGER usage_events_no_truncate BEFORE TRUNCATE ON usage_events
    FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change();
"""


# How a meter reads an event, shared by the rollup worker and every usage read, so both count
# exactly alike: the value of its field (NULL unless a number), whether its filters keep the
# event, and the key of its group. The two public functions that need a subquery are thin
# wrappers PostgreSQL inlines, so meters without filters or groups (most) never pay for one.
USAGE_FUNCTIONS = """
CREATE FUNCTION accrual_usage_value(props jsonb, field text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN field IS NULL THEN NULL
        WHEN jsonb_typeof(props -> field) = 'number' THEN (props ->> field)::numeric
        WHEN (props ->> field) ~ '^-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$' THEN (props ->> field)::numeric
        ELSE NULL
    END
$$;

CREATE FUNCTION accrual_usage_matches_each(props jsonb, filters jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM jsonb_each(filters) AS f(key, allowed)
        WHERE NOT coalesce(props ->> f.key IN (SELECT jsonb_array_elements_text(f.allowed)), false)
    )
$$;

CREATE FUNCTION accrual_usage_matches(props jsonb, filters jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN filters = '{}'::jsonb THEN true ELSE accrual_usage_matches_each(props, filters) END
$$;

CREATE FUNCTION accrual_usage_group_of(props jsonb, group_by text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        (SELECT jsonb_agg(coalesce(props -> g, 'null'::jsonb) ORDER BY i)::text
           FROM unnest(group_by) WITH ORDINALITY AS x(g, i)),
        '[]')
$$;

CREATE FUNCTION accrual_usage_group(props jsonb, group_by text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(group_by) = 0 THEN '[]' ELSE accrual_usage_group_of(props, group_by) END
$$;
"""


def upgrade() -> None:
    op.add_column("tenants", sa.Column("late_events", sa.Text, nullable=False, server_default="bill_next"))
    op.create_check_constraint(
        "ck_tenants_known_late_events", "tenants", "late_events in ('bill_next','reject')"
    )
    op.add_column("subscriptions", sa.Column("usage_closed_until", TS, nullable=True))
    # Where in the hour the subscription's billing boundaries fall: its usage is rolled up in
    # hours starting there, so a period's usage is whole buckets. Fixed at creation.
    op.add_column(
        "subscriptions",
        sa.Column("usage_grid_offset_us", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_check_constraint(
        "ck_subscriptions_usage_grid_offset_within_an_hour",
        "subscriptions",
        "usage_grid_offset_us >= 0 and usage_grid_offset_us < 3600000000",
    )
    op.create_table(
        "usage_event_ids",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("event_id", ID_TEXT, nullable=False),
        sa.Column("payload_hash", sa.LargeBinary, nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("rejected", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", name="pk_usage_event_ids"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_usage_event_ids_tenant"),
    )
    op.execute(USAGE_EVENTS)
    op.execute(USAGE_FUNCTIONS)
    op.execute(
        "CREATE TRIGGER usage_event_ids_append_only BEFORE UPDATE OR DELETE ON usage_event_ids "
        "FOR EACH ROW EXECUTE FUNCTION accrual_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER usage_event_ids_no_truncate BEFORE TRUNCATE ON usage_event_ids "
        "FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change()"
    )
    op.create_table(
        "usage_quarantine",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("event_id", ID_TEXT, nullable=False),
        sa.Column("meter", sa.Text, nullable=False),
        sa.Column("subscription_ref", sa.Text, nullable=True),
        sa.Column("customer_ref", sa.Text, nullable=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("properties", pg.JSONB, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True),
        sa.Column("released_to", sa.Uuid, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", name="pk_usage_quarantine"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_usage_quarantine_tenant"),
        sa.CheckConstraint(
            "reason in ('unknown_meter','unknown_customer','unknown_subscription','no_subscription',"
            "'ambiguous_subscription','before_start','after_end','invalid_value')",
            name="ck_usage_quarantine_known_reason",
        ),
    )
    op.create_index(
        "ix_usage_quarantine_held",
        "usage_quarantine",
        ["tenant_id", "received_at"],
        postgresql_where=sa.text("released_at is null"),
    )
    op.create_table(
        "usage_rollups",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("subscription_id", sa.Uuid, nullable=False),
        sa.Column("meter_id", sa.Uuid, nullable=False),
        sa.Column("bucket", TS, nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("total", sa.Numeric, nullable=False),
        sa.Column("maximum", sa.Numeric, nullable=True),
        sa.Column("latest_ts", TS, nullable=True),
        sa.Column("latest_value", sa.Numeric, nullable=True),
        sa.Column("latest_event", ID_TEXT, nullable=True),
        sa.Column("weighted", sa.Numeric, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "subscription_id", "meter_id", "bucket", "group_key", name="pk_usage_rollups"
        ),
    )
    op.create_table(
        "usage_rollup_values",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("subscription_id", sa.Uuid, nullable=False),
        sa.Column("meter_id", sa.Uuid, nullable=False),
        sa.Column("bucket", TS, nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "subscription_id",
            "meter_id",
            "bucket",
            "group_key",
            "value",
            name="pk_usage_rollup_values",
        ),
    )
    op.create_table(
        "usage_rollup_state",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("xact_watermark", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_usage_rollup_state"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_usage_rollup_state_tenant"),
    )
    # Tenants that exist already start rolling up from here: they have no events yet.
    op.execute(
        "INSERT INTO usage_rollup_state (tenant_id, xact_watermark, updated_at) "
        "SELECT tenant_id, (pg_current_xact_id()::text)::bigint, now() FROM tenants"
    )


def downgrade() -> None:
    for table in ("usage_rollup_state", "usage_rollup_values", "usage_rollups", "usage_quarantine"):
        op.drop_table(table)
    op.execute("DROP TABLE usage_events")
    for function in (
        "accrual_usage_value(jsonb, text)",
        "accrual_usage_matches(jsonb, jsonb)",
        "accrual_usage_matches_each(jsonb, jsonb)",
        "accrual_usage_group(jsonb, text[])",
        "accrual_usage_group_of(jsonb, text[])",
    ):
        op.execute(f"DROP FUNCTION {function}")
    op.drop_table("usage_event_ids")
    op.drop_constraint("ck_subscriptions_usage_grid_offset_within_an_hour", "subscriptions")
    op.drop_column("subscriptions", "usage_grid_offset_us")
    op.drop_column("subscriptions", "usage_closed_until")
    op.drop_constraint("ck_tenants_known_late_events", "tenants")
    op.drop_column("tenants", "late_events")
