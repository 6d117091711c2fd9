"""Customers and subscriptions: lifecycle state, history, scheduled changes, billing points.

Revision ID: 0003_subscriptions
Revises: 0002_catalog
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0003_subscriptions"
down_revision = "0002_catalog"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _fk(columns: list[str], target: str, target_columns: list[str], name: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", *columns],
        [f"{target}.tenant_id", *[f"{target}.{c}" for c in target_columns]],
        name=name,
    )


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
    op.add_column("tenants", sa.Column("proration", sa.Text, nullable=False, server_default="day"))
    op.create_check_constraint("ck_tenants_known_proration", "tenants", "proration in ('day','second')")
    op.create_table(
        "customers",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("customer_id", sa.Uuid, nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=True),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=True),
        sa.Column("billing_address", pg.JSONB, nullable=False),
        sa.Column("tax_rates", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("grace_period_days", sa.Integer, nullable=True),
        sa.Column("payment_method", sa.Text, nullable=True),
        sa.Column("metadata", pg.JSONB, nullable=False),
        sa.Column("test_clock_id", sa.Uuid, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "customer_id", name="pk_customers"),
        sa.UniqueConstraint("tenant_id", "external_id", name="uq_customers_tenant_id_external_id"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_customers_tenant"),
        _fk(["test_clock_id"], "test_clocks", ["test_clock_id"], "fk_customers_test_clock"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_customers_currency_format"),
        sa.CheckConstraint("length(external_id) between 1 and 200", name="ck_customers_external_id_length"),
        sa.CheckConstraint(
            "grace_period_days is null or grace_period_days between 0 and 365",
            name="ck_customers_grace_range",
        ),
    )
    op.create_table(
        "subscriptions",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("subscription_id", sa.Uuid, nullable=False),
        sa.Column("external_id", sa.Text, nullable=True),
        sa.Column("customer_id", sa.Uuid, nullable=False),
        sa.Column("plan_id", sa.Uuid, nullable=False),
        sa.Column("plan_version_id", sa.Uuid, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("billing", sa.Text, nullable=False),
        sa.Column("trial_end_behavior", sa.Text, nullable=False),
        sa.Column("start_at", TS, nullable=False),
        sa.Column("anchor", TS, nullable=True),
        sa.Column("trial_end", TS, nullable=True),
        sa.Column("current_period_start", TS, nullable=True),
        sa.Column("current_period_end", TS, nullable=True),
        sa.Column("segments", pg.JSONB, nullable=False),
        sa.Column("advance_billed", sa.Boolean, nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean, nullable=False),
        sa.Column("canceled_at", TS, nullable=True),
        sa.Column("paused_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("prior_status", sa.Text, nullable=True),
        sa.Column("coupon_id", sa.Uuid, nullable=True),
        sa.Column("metadata", pg.JSONB, nullable=False),
        sa.Column("test_clock_id", sa.Uuid, nullable=True),
        sa.Column("next_due_at", TS, nullable=True),
        sa.Column("lock_version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "subscription_id", name="pk_subscriptions"),
        sa.UniqueConstraint("tenant_id", "external_id", name="uq_subscriptions_tenant_id_external_id"),
        _fk(["customer_id"], "customers", ["customer_id"], "fk_subscriptions_customer"),
        _fk(["plan_id"], "plans", ["plan_id"], "fk_subscriptions_plan"),
        _fk(["plan_version_id"], "plan_versions", ["plan_version_id"], "fk_subscriptions_plan_version"),
        _fk(["coupon_id"], "coupons", ["coupon_id"], "fk_subscriptions_coupon"),
        _fk(["test_clock_id"], "test_clocks", ["test_clock_id"], "fk_subscriptions_test_clock"),
        sa.CheckConstraint(
            "status in ('pending','trialing','active','past_due','paused','canceled','ended')",
            name="ck_subscriptions_known_status",
        ),
        sa.CheckConstraint("quantity >= 1", name="ck_subscriptions_quantity_positive"),
        sa.CheckConstraint("billing in ('anniversary','calendar')", name="ck_subscriptions_known_billing"),
        sa.CheckConstraint(
            "(current_period_start is null) = (current_period_end is null) "
            "and (current_period_start is null or current_period_start < current_period_end)",
            name="ck_subscriptions_period_ordered",
        ),
    )
    op.create_index("ix_subscriptions_tenant_id_customer_id", "subscriptions", ["tenant_id", "customer_id"])
    op.create_index(
        "ix_subscriptions_real_clock_due",
        "subscriptions",
        ["next_due_at"],
        postgresql_where=sa.text("test_clock_id is null and next_due_at is not null"),
    )
    op.create_index(
        "ix_subscriptions_test_clock_due",
        "subscriptions",
        ["tenant_id", "test_clock_id", "next_due_at"],
        postgresql_where=sa.text("test_clock_id is not null and next_due_at is not null"),
    )
    op.create_table(
        "subscription_history",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("subscription_id", sa.Uuid, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("from_status", sa.Text, nullable=True),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("plan_version_id", sa.Uuid, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("period_start", TS, nullable=True),
        sa.Column("period_end", TS, nullable=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("details", pg.JSONB, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "subscription_id", "seq", name="pk_subscription_history"),
        _fk(
            ["subscription_id"], "subscriptions", ["subscription_id"], "fk_subscription_history_subscription"
        ),
    )
    op.create_table(
        "scheduled_changes",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("scheduled_change_id", sa.Uuid, nullable=False),
        sa.Column("subscription_id", sa.Uuid, nullable=False),
        sa.Column("at_period_end", sa.Boolean, nullable=False),
        sa.Column("effective_at", TS, nullable=False),
        sa.Column("plan_version_id", sa.Uuid, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("settled_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "scheduled_change_id", name="pk_scheduled_changes"),
        _fk(["subscription_id"], "subscriptions", ["subscription_id"], "fk_scheduled_changes_subscription"),
        _fk(["plan_version_id"], "plan_versions", ["plan_version_id"], "fk_scheduled_changes_version"),
        sa.CheckConstraint(
            "status in ('scheduled','applied','canceled')", name="ck_scheduled_changes_known_status"
        ),
    )
    op.create_index(
        "ix_scheduled_changes_pending",
        "scheduled_changes",
        ["tenant_id", "subscription_id", "effective_at"],
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.create_table(
        "billing_points",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("billing_point_id", sa.Uuid, nullable=False),
        sa.Column("subscription_id", sa.Uuid, nullable=False),
        sa.Column("history_seq", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("period_end", TS, nullable=False),
        sa.Column("fee_lines", pg.JSONB, nullable=False),
        sa.Column("usage", pg.JSONB, nullable=False),
        sa.Column("test_clock_id", sa.Uuid, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "billing_point_id", name="pk_billing_points"),
        sa.UniqueConstraint(
            "tenant_id",
            "subscription_id",
            "history_seq",
            name="uq_billing_points_tenant_id_subscription_id_history_seq",
        ),
        _fk(["subscription_id"], "subscriptions", ["subscription_id"], "fk_billing_points_subscription"),
    )
    _append_only("subscription_history")
    _append_only("billing_points")


def downgrade() -> None:
    for table in (
        "billing_points",
        "scheduled_changes",
        "subscription_history",
        "subscriptions",
        "customers",
    ):
        op.drop_table(table)
    op.drop_constraint("ck_tenants_known_proration", "tenants")
    op.drop_column("tenants", "proration")
