"""Catalog: products, meters, plans with frozen versions, charges, coupons, tax rates.

Revision ID: 0002_catalog
Revises: 0001_foundation
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002_catalog"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
CODE_CHECK = "code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'"

# A published plan version is a fact: invoices say which price they used, years later. The
# database refuses to change or delete it (and its charges) for every role; a version awaiting
# approval may only move to published or back to draft, its terms unchanged.
FREEZE_FUNCTIONS = """
CREATE FUNCTION accrual_plan_version_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'plan version % of plan % is %: it cannot be deleted', OLD.version, OLD.plan_id, OLD.status
                USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'published' THEN
        RAISE EXCEPTION 'plan version % of plan % is published: it is frozen forever; create a new version', OLD.version, OLD.plan_id
            USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
    END IF;
    IF OLD.status = 'pending_approval' AND (
        NEW.plan_id, NEW.version, NEW.interval_unit, NEW.interval_count, NEW.trial_days, NEW.tax_rates
    ) IS DISTINCT FROM (
        OLD.plan_id, OLD.version, OLD.interval_unit, OLD.interval_count, OLD.trial_days, OLD.tax_rates
    ) THEN
        RAISE EXCEPTION 'plan version % of plan % awaits approval: its terms cannot change', OLD.version, OLD.plan_id
            USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION accrual_charge_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    version_status text;
BEGIN
    -- FOR SHARE waits for a concurrent publish of the version and then sees its outcome.
    SELECT status INTO version_status FROM plan_versions
        WHERE tenant_id = COALESCE(NEW.tenant_id, OLD.tenant_id)
          AND plan_version_id = COALESCE(NEW.plan_version_id, OLD.plan_version_id)
        FOR SHARE;
    IF version_status IS DISTINCT FROM 'draft' THEN
        RAISE EXCEPTION 'charges of a % plan version cannot be added, changed or removed', version_status
            USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.plan_version_id IS DISTINCT FROM OLD.plan_version_id THEN
        RAISE EXCEPTION 'a charge cannot move to another plan version'
            USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN COALESCE(NEW, OLD);
END
$$;

CREATE FUNCTION accrual_plan_identity_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.code, NEW.currency) IS DISTINCT FROM (OLD.code, OLD.currency) THEN
        RAISE EXCEPTION 'a plan''s code and currency never change, and plans are archived, not deleted'
            USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION accrual_coupon_terms_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.code, NEW.spec) IS DISTINCT FROM (OLD.code, OLD.spec) THEN
        RAISE EXCEPTION 'a coupon''s terms never change (create a new coupon), and coupons are archived, not deleted'
            USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION accrual_tax_rate_terms_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.code, NEW.rate, NEW.inclusive) IS DISTINCT FROM (OLD.code, OLD.rate, OLD.inclusive) THEN
        RAISE EXCEPTION 'a tax rate''s rate never changes (create a new tax rate), and tax rates are archived, not deleted'
            USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION accrual_meter_rules_frozen_in_use() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.code IS DISTINCT FROM OLD.code THEN
        RAISE EXCEPTION 'a meter''s code never changes, and meters are archived, not deleted'
            USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
    END IF;
    IF (NEW.aggregation, NEW.field, NEW.filters, NEW.group_by)
            IS DISTINCT FROM (OLD.aggregation, OLD.field, OLD.filters, OLD.group_by)
       AND EXISTS (
            SELECT 1 FROM charges c JOIN plan_versions v
              ON v.tenant_id = c.tenant_id AND v.plan_version_id = c.plan_version_id
             WHERE c.tenant_id = OLD.tenant_id AND c.meter_id = OLD.meter_id AND v.status <> 'draft') THEN
        RAISE EXCEPTION 'meter % is used by a published plan version: what it counts cannot change', OLD.code
            USING ERRCODE = 'AC001', TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END
$$;
"""


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name=f"fk_{table}_tenant")


def _fk(columns: list[str], target: str, target_columns: list[str], name: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", *columns],
        [f"{target}.tenant_id", *[f"{target}.{c}" for c in target_columns]],
        name=name,
    )


def _trigger(table: str, function: str, events: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_frozen BEFORE {events} ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"
    )


def upgrade() -> None:
    op.add_column(
        "tenants", sa.Column("maker_checker", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_table(
        "products",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("product_id", sa.Uuid, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("archived_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "product_id", name="pk_products"),
        sa.UniqueConstraint("tenant_id", "code", name="uq_products_tenant_id_code"),
        _tenant_fk("products"),
        sa.CheckConstraint(CODE_CHECK, name="ck_products_code_format"),
    )
    op.create_table(
        "meters",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("meter_id", sa.Uuid, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("aggregation", sa.Text, nullable=False),
        sa.Column("field", sa.Text, nullable=True),
        sa.Column("filters", pg.JSONB, nullable=False),
        sa.Column("group_by", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("archived_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "meter_id", name="pk_meters"),
        sa.UniqueConstraint("tenant_id", "code", name="uq_meters_tenant_id_code"),
        _tenant_fk("meters"),
        sa.CheckConstraint(CODE_CHECK, name="ck_meters_code_format"),
        sa.CheckConstraint(
            "aggregation in ('count','sum','max','unique_count','latest','weighted_sum')",
            name="ck_meters_known_aggregation",
        ),
        sa.CheckConstraint("aggregation = 'count' or field is not null", name="ck_meters_field_required"),
    )
    op.create_table(
        "plans",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("plan_id", sa.Uuid, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("product_id", sa.Uuid, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("archived_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "plan_id", name="pk_plans"),
        sa.UniqueConstraint("tenant_id", "code", name="uq_plans_tenant_id_code"),
        _tenant_fk("plans"),
        _fk(["product_id"], "products", ["product_id"], "fk_plans_product"),
        sa.CheckConstraint(CODE_CHECK, name="ck_plans_code_format"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_plans_currency_format"),
    )
    op.create_table(
        "plan_versions",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("plan_version_id", sa.Uuid, nullable=False),
        sa.Column("plan_id", sa.Uuid, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("interval_unit", sa.Text, nullable=False),
        sa.Column("interval_count", sa.Integer, nullable=False),
        sa.Column("trial_days", sa.Integer, nullable=False),
        sa.Column("tax_rates", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("submitted_at", TS, nullable=True),
        sa.Column("submitted_by", sa.Text, nullable=True),
        sa.Column("published_at", TS, nullable=True),
        sa.Column("published_by", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "plan_version_id", name="pk_plan_versions"),
        sa.UniqueConstraint(
            "tenant_id", "plan_id", "version", name="uq_plan_versions_tenant_id_plan_id_version"
        ),
        _fk(["plan_id"], "plans", ["plan_id"], "fk_plan_versions_plan"),
        sa.CheckConstraint(
            "status in ('draft','pending_approval','published')", name="ck_plan_versions_known_status"
        ),
        sa.CheckConstraint(
            "interval_unit in ('day','week','month','quarter','year')", name="ck_plan_versions_known_interval"
        ),
        sa.CheckConstraint(
            "interval_count >= 1 and trial_days >= 0 and version >= 1", name="ck_plan_versions_positive"
        ),
        sa.CheckConstraint(
            "(status = 'published') = (published_at is not null)",
            name="ck_plan_versions_published_when_stamped",
        ),
    )
    op.create_index(
        "uq_plan_versions_one_unpublished",
        "plan_versions",
        ["tenant_id", "plan_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'published'"),
    )
    op.create_table(
        "charges",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("charge_id", sa.Uuid, nullable=False),
        sa.Column("plan_version_id", sa.Uuid, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("timing", sa.Text, nullable=False),
        sa.Column("meter_id", sa.Uuid, nullable=True),
        sa.Column("spec", pg.JSONB, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "charge_id", name="pk_charges"),
        sa.UniqueConstraint(
            "tenant_id", "plan_version_id", "code", name="uq_charges_tenant_id_plan_version_id_code"
        ),
        sa.UniqueConstraint(
            "tenant_id", "plan_version_id", "position", name="uq_charges_tenant_id_plan_version_id_position"
        ),
        _fk(["plan_version_id"], "plan_versions", ["plan_version_id"], "fk_charges_plan_version"),
        _fk(["meter_id"], "meters", ["meter_id"], "fk_charges_meter"),
        sa.CheckConstraint(
            "model in ('flat','per_unit','graduated','volume','package','percentage')",
            name="ck_charges_known_model",
        ),
        sa.CheckConstraint("timing in ('in_advance','in_arrears')", name="ck_charges_known_timing"),
        sa.CheckConstraint("(model = 'flat') = (meter_id is null)", name="ck_charges_metered_has_meter"),
    )
    op.create_index("ix_charges_tenant_id_meter_id", "charges", ["tenant_id", "meter_id"])
    op.create_table(
        "coupons",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("coupon_id", sa.Uuid, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("spec", pg.JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("archived_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "coupon_id", name="pk_coupons"),
        sa.UniqueConstraint("tenant_id", "code", name="uq_coupons_tenant_id_code"),
        _tenant_fk("coupons"),
        sa.CheckConstraint(CODE_CHECK, name="ck_coupons_code_format"),
    )
    op.create_table(
        "tax_rates",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("tax_rate_id", sa.Uuid, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("rate", sa.Numeric, nullable=False),
        sa.Column("inclusive", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("archived_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "tax_rate_id", name="pk_tax_rates"),
        sa.UniqueConstraint("tenant_id", "code", name="uq_tax_rates_tenant_id_code"),
        _tenant_fk("tax_rates"),
        sa.CheckConstraint(CODE_CHECK, name="ck_tax_rates_code_format"),
        sa.CheckConstraint("rate >= 0 and rate <= 100", name="ck_tax_rates_rate_range"),
    )
    op.execute(FREEZE_FUNCTIONS)
    _trigger("plan_versions", "accrual_plan_version_frozen", "UPDATE OR DELETE")
    _trigger("charges", "accrual_charge_frozen", "INSERT OR UPDATE OR DELETE")
    _trigger("plans", "accrual_plan_identity_frozen", "UPDATE OR DELETE")
    _trigger("coupons", "accrual_coupon_terms_frozen", "UPDATE OR DELETE")
    _trigger("tax_rates", "accrual_tax_rate_terms_frozen", "UPDATE OR DELETE")
    _trigger("meters", "accrual_meter_rules_frozen_in_use", "UPDATE OR DELETE")
    for table in ("plan_versions", "charges", "plans", "coupons", "tax_rates", "meters"):
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change()"
        )


def downgrade() -> None:
    for table in ("charges", "plan_versions", "plans", "coupons", "tax_rates", "meters", "products"):
        op.drop_table(table)
    for function in (
        "accrual_plan_version_frozen",
        "accrual_charge_frozen",
        "accrual_plan_identity_frozen",
        "accrual_coupon_terms_frozen",
        "accrual_tax_rate_terms_frozen",
        "accrual_meter_rules_frozen_in_use",
    ):
        op.execute(f"DROP FUNCTION {function}()")
    op.drop_column("tenants", "maker_checker")
