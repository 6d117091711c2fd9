"""The relational schema, as SQLAlchemy Core tables.

Every table leads with `tenant_id`, and every primary and unique key includes it, so the
schema can be distributed by tenant. Constraints carry explicit names: a violated constraint
is translated, by its name, into a specific error (see `store.constraints`). Alembic
migrations under `store/migrations` create exactly these tables; a test compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.types import UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id, used to read the outbox in commit order."""

    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "xid8"


# So reflection (and the schema-drift test) knows the type instead of warning about it.
ischema_names["xid8"] = Xid8


def _tenant_id() -> sa.Column[object]:
    return sa.Column("tenant_id", sa.Uuid, nullable=False)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name=f"fk_{table}_tenant")


TIMESTAMP = sa.DateTime(timezone=True)

API_KEY_SCOPES = ("admin", "write", "read", "ingest", "finance")

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("tenant_id", sa.Uuid, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    # Publishing a plan version needs a second person's approval.
    sa.Column("maker_checker", sa.Boolean, nullable=False, server_default=sa.false()),
    # Partial periods are prorated by day (in the customer's time zone) or by second.
    sa.Column("proration", sa.Text, nullable=False, server_default="day"),
    # Usage arriving for a period already invoiced: bill it on the next invoice, or refuse it.
    sa.Column("late_events", sa.Text, nullable=False, server_default="bill_next"),
    # Drafts stay editable this many days before they finalize on their own.
    sa.Column("grace_period_days", sa.Integer, nullable=False, server_default="0"),
    # Net N: an invoice is due this many days after it is finalized.
    sa.Column("payment_terms_days", sa.Integer, nullable=False, server_default="0"),
    sa.Column("invoice_prefix", sa.Text, nullable=False, server_default="ACC-"),
    sa.Column("credit_note_prefix", sa.Text, nullable=False, server_default="CN-"),
    # An invoice finalized with nothing to pay is marked paid, or left open.
    sa.Column("zero_amount_invoices", sa.Text, nullable=False, server_default="mark_paid"),
    # Who issues the invoices: legal name, address, tax id, as printed on documents.
    sa.Column("seller", pg.JSONB, nullable=False, server_default="{}"),
    # Webhooks may go to plain-http loopback URLs (tests, development).
    sa.Column("allow_insecure_webhooks", sa.Boolean, nullable=False, server_default=sa.false()),
    # Private networks (CIDR) webhooks may reach; others are refused.
    sa.Column("webhook_allowed_networks", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.PrimaryKeyConstraint("tenant_id", name="pk_tenants"),
    sa.CheckConstraint("length(name) between 1 and 200", name="name_length"),
    sa.CheckConstraint("proration in ('day','second')", name="known_proration"),
    sa.CheckConstraint("late_events in ('bill_next','reject')", name="known_late_events"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _tenant_id(),
    sa.Column("api_key_id", sa.Uuid, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("key_hash", sa.LargeBinary, nullable=False),
    sa.Column("scopes", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("revoked_at", TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "api_key_id", name="pk_api_keys"),
    sa.UniqueConstraint("tenant_id", "key_hash", name="uq_api_keys_tenant_id_key_hash"),
    _tenant_fk("api_keys"),
    sa.CheckConstraint("length(name) between 1 and 200", name="name_length"),
    sa.CheckConstraint(
        "cardinality(scopes) > 0 and scopes <@ array['admin','write','read','ingest','finance']::text[]",
        name="known_scopes",
    ),
    sa.CheckConstraint("octet_length(key_hash) = 32", name="key_hash_sha256"),
    # Authentication finds a key by its hash alone (the caller has not said who they are yet).
    sa.Index("ix_api_keys_key_hash", "key_hash"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    _tenant_id(),
    sa.Column("idempotency_key", sa.Text, nullable=False),
    sa.Column("request_method", sa.Text, nullable=False),
    sa.Column("request_path", sa.Text, nullable=False),
    sa.Column("request_hash", sa.LargeBinary, nullable=False),
    sa.Column("response_status", sa.Integer, nullable=False),
    sa.Column("response_headers", pg.JSONB, nullable=False),
    sa.Column("response_body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "idempotency_key", name="pk_idempotency_keys"),
    _tenant_fk("idempotency_keys"),
    sa.CheckConstraint("length(idempotency_key) between 1 and 255", name="key_length"),
    sa.Index("ix_idempotency_keys_created_at", "created_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    _tenant_id(),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("occurred_at", TIMESTAMP, nullable=False),
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
    sa.CheckConstraint("seq >= 1", name="seq_positive"),
    sa.CheckConstraint("octet_length(hash) = 32 and octet_length(prev_hash) = 32", name="sha256"),
    sa.Index("ix_audit_log_tenant_id_entity", "tenant_id", "entity_type", "entity_id"),
)

outbox_events = sa.Table(
    "outbox_events",
    metadata,
    _tenant_id(),
    sa.Column("event_id", sa.Uuid, nullable=False),
    sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("entity_type", sa.Text, nullable=False),
    sa.Column("entity_id", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
    sa.Column("occurred_at", TIMESTAMP, nullable=False),
    # The writing transaction's id: a relay reads only below the oldest running transaction
    # (pg_snapshot_xmin), so an event that commits late is never skipped.
    sa.Column("xid", Xid8, nullable=False, server_default=sa.text("pg_current_xact_id()")),
    sa.PrimaryKeyConstraint("tenant_id", "event_id", name="pk_outbox_events"),
    sa.UniqueConstraint("tenant_id", "seq", name="uq_outbox_events_tenant_id_seq"),
    _tenant_fk("outbox_events"),
    sa.Index("ix_outbox_events_seq", "seq"),
    sa.Index("ix_outbox_events_tenant_id_entity", "tenant_id", "entity_type", "entity_id", "seq"),
    sa.Index("ix_outbox_events_xid", "xid"),
    sa.Index("ix_outbox_events_tenant_id_xid", "tenant_id", "xid", "seq"),
)

test_clocks = sa.Table(
    "test_clocks",
    metadata,
    _tenant_id(),
    sa.Column("test_clock_id", sa.Uuid, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("frozen_time", TIMESTAMP, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "test_clock_id", name="pk_test_clocks"),
    _tenant_fk("test_clocks"),
    sa.CheckConstraint("length(name) between 1 and 200", name="name_length"),
)


def _fk(
    table: str, columns: list[str], target: str, target_columns: list[str], name: str
) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id", *columns],
        [f"{target}.tenant_id", *[f"{target}.{c}" for c in target_columns]],
        name=name,
    )


CODE_CHECK = "code ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'"

products = sa.Table(
    "products",
    metadata,
    _tenant_id(),
    sa.Column("product_id", sa.Uuid, nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("archived_at", TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "product_id", name="pk_products"),
    sa.UniqueConstraint("tenant_id", "code", name="uq_products_tenant_id_code"),
    _tenant_fk("products"),
    sa.CheckConstraint(CODE_CHECK, name="code_format"),
)

meters = sa.Table(
    "meters",
    metadata,
    _tenant_id(),
    sa.Column("meter_id", sa.Uuid, nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("aggregation", sa.Text, nullable=False),
    sa.Column("field", sa.Text, nullable=True),
    sa.Column("filters", pg.JSONB, nullable=False),
    sa.Column("group_by", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.Column("archived_at", TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "meter_id", name="pk_meters"),
    sa.UniqueConstraint("tenant_id", "code", name="uq_meters_tenant_id_code"),
    _tenant_fk("meters"),
    sa.CheckConstraint(CODE_CHECK, name="code_format"),
    sa.CheckConstraint(
        "aggregation in ('count','sum','max','unique_count','latest','weighted_sum')",
        name="known_aggregation",
    ),
    sa.CheckConstraint("aggregation = 'count' or field is not null", name="field_required"),
)

plans = sa.Table(
    "plans",
    metadata,
    _tenant_id(),
    sa.Column("plan_id", sa.Uuid, nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("product_id", sa.Uuid, nullable=True),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("archived_at", TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "plan_id", name="pk_plans"),
    sa.UniqueConstraint("tenant_id", "code", name="uq_plans_tenant_id_code"),
    _tenant_fk("plans"),
    _fk("plans", ["product_id"], "products", ["product_id"], "fk_plans_product"),
    sa.CheckConstraint(CODE_CHECK, name="code_format"),
    sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_format"),
)

plan_versions = sa.Table(
    "plan_versions",
    metadata,
    _tenant_id(),
    sa.Column("plan_version_id", sa.Uuid, nullable=False),
    sa.Column("plan_id", sa.Uuid, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("interval_unit", sa.Text, nullable=False),
    sa.Column("interval_count", sa.Integer, nullable=False),
    sa.Column("trial_days", sa.Integer, nullable=False),
    sa.Column("tax_rates", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("submitted_at", TIMESTAMP, nullable=True),
    sa.Column("submitted_by", sa.Text, nullable=True),
    sa.Column("published_at", TIMESTAMP, nullable=True),
    sa.Column("published_by", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "plan_version_id", name="pk_plan_versions"),
    sa.UniqueConstraint("tenant_id", "plan_id", "version", name="uq_plan_versions_tenant_id_plan_id_version"),
    _fk("plan_versions", ["plan_id"], "plans", ["plan_id"], "fk_plan_versions_plan"),
    sa.CheckConstraint("status in ('draft','pending_approval','published')", name="known_status"),
    sa.CheckConstraint("interval_unit in ('day','week','month','quarter','year')", name="known_interval"),
    sa.CheckConstraint("interval_count >= 1 and trial_days >= 0 and version >= 1", name="positive"),
    sa.CheckConstraint("(status = 'published') = (published_at is not null)", name="published_when_stamped"),
    # At most one version of a plan is open for editing or approval at a time.
    sa.Index(
        "uq_plan_versions_one_unpublished",
        "tenant_id",
        "plan_id",
        unique=True,
        postgresql_where=sa.text("status <> 'published'"),
    ),
)

charges = sa.Table(
    "charges",
    metadata,
    _tenant_id(),
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
    _fk("charges", ["plan_version_id"], "plan_versions", ["plan_version_id"], "fk_charges_plan_version"),
    _fk("charges", ["meter_id"], "meters", ["meter_id"], "fk_charges_meter"),
    sa.CheckConstraint(
        "model in ('flat','per_unit','graduated','volume','package','percentage')", name="known_model"
    ),
    sa.CheckConstraint("timing in ('in_advance','in_arrears')", name="known_timing"),
    sa.CheckConstraint("(model = 'flat') = (meter_id is null)", name="metered_has_meter"),
    sa.Index("ix_charges_tenant_id_meter_id", "tenant_id", "meter_id"),
)

coupons = sa.Table(
    "coupons",
    metadata,
    _tenant_id(),
    sa.Column("coupon_id", sa.Uuid, nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("spec", pg.JSONB, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("archived_at", TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "coupon_id", name="pk_coupons"),
    sa.UniqueConstraint("tenant_id", "code", name="uq_coupons_tenant_id_code"),
    _tenant_fk("coupons"),
    sa.CheckConstraint(CODE_CHECK, name="code_format"),
)

tax_rates = sa.Table(
    "tax_rates",
    metadata,
    _tenant_id(),
    sa.Column("tax_rate_id", sa.Uuid, nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("rate", sa.Numeric, nullable=False),
    sa.Column("inclusive", sa.Boolean, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("archived_at", TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "tax_rate_id", name="pk_tax_rates"),
    sa.UniqueConstraint("tenant_id", "code", name="uq_tax_rates_tenant_id_code"),
    _tenant_fk("tax_rates"),
    sa.CheckConstraint(CODE_CHECK, name="code_format"),
    sa.CheckConstraint("rate >= 0 and rate <= 100", name="rate_range"),
)

customers = sa.Table(
    "customers",
    metadata,
    _tenant_id(),
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
    sa.Column("payment_terms_days", sa.Integer, nullable=True),
    sa.Column("metadata", pg.JSONB, nullable=False),
    sa.Column("test_clock_id", sa.Uuid, nullable=True),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "customer_id", name="pk_customers"),
    sa.UniqueConstraint("tenant_id", "external_id", name="uq_customers_tenant_id_external_id"),
    _tenant_fk("customers"),
    _fk("customers", ["test_clock_id"], "test_clocks", ["test_clock_id"], "fk_customers_test_clock"),
    sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_format"),
    sa.CheckConstraint("length(external_id) between 1 and 200", name="external_id_length"),
    sa.CheckConstraint(
        "grace_period_days is null or grace_period_days between 0 and 365", name="grace_range"
    ),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    _tenant_id(),
    sa.Column("subscription_id", sa.Uuid, nullable=False),
    sa.Column("external_id", sa.Text, nullable=True),
    sa.Column("customer_id", sa.Uuid, nullable=False),
    sa.Column("plan_id", sa.Uuid, nullable=False),
    sa.Column("plan_version_id", sa.Uuid, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("billing", sa.Text, nullable=False),
    sa.Column("trial_end_behavior", sa.Text, nullable=False),
    sa.Column("start_at", TIMESTAMP, nullable=False),
    sa.Column("anchor", TIMESTAMP, nullable=True),
    sa.Column("trial_end", TIMESTAMP, nullable=True),
    sa.Column("current_period_start", TIMESTAMP, nullable=True),
    sa.Column("current_period_end", TIMESTAMP, nullable=True),
    sa.Column("segments", pg.JSONB, nullable=False),
    sa.Column("advance_billed", sa.Boolean, nullable=False),
    sa.Column("cancel_at_period_end", sa.Boolean, nullable=False),
    sa.Column("canceled_at", TIMESTAMP, nullable=True),
    sa.Column("paused_at", TIMESTAMP, nullable=True),
    sa.Column("ended_at", TIMESTAMP, nullable=True),
    sa.Column("prior_status", sa.Text, nullable=True),
    sa.Column("coupon_id", sa.Uuid, nullable=True),
    sa.Column("metadata", pg.JSONB, nullable=False),
    sa.Column("test_clock_id", sa.Uuid, nullable=True),
    # The earliest instant something is due: its start, trial end, period end or a scheduled change.
    sa.Column("next_due_at", TIMESTAMP, nullable=True),
    sa.Column("lock_version", sa.Integer, nullable=False),
    # Usage before this instant has been handed to billing; later arrivals for it are late.
    sa.Column("usage_closed_until", TIMESTAMP, nullable=True),
    # Where in the hour its billing boundaries fall; its usage rollups are hours starting there.
    sa.Column("usage_grid_offset_us", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "subscription_id", name="pk_subscriptions"),
    sa.CheckConstraint(
        "usage_grid_offset_us >= 0 and usage_grid_offset_us < 3600000000",
        name="usage_grid_offset_within_an_hour",
    ),
    sa.UniqueConstraint("tenant_id", "external_id", name="uq_subscriptions_tenant_id_external_id"),
    _fk("subscriptions", ["customer_id"], "customers", ["customer_id"], "fk_subscriptions_customer"),
    _fk("subscriptions", ["plan_id"], "plans", ["plan_id"], "fk_subscriptions_plan"),
    _fk(
        "subscriptions",
        ["plan_version_id"],
        "plan_versions",
        ["plan_version_id"],
        "fk_subscriptions_plan_version",
    ),
    _fk("subscriptions", ["coupon_id"], "coupons", ["coupon_id"], "fk_subscriptions_coupon"),
    _fk("subscriptions", ["test_clock_id"], "test_clocks", ["test_clock_id"], "fk_subscriptions_test_clock"),
    sa.CheckConstraint(
        "status in ('pending','trialing','active','past_due','paused','canceled','ended')",
        name="known_status",
    ),
    sa.CheckConstraint("quantity >= 1", name="quantity_positive"),
    sa.CheckConstraint("billing in ('anniversary','calendar')", name="known_billing"),
    sa.CheckConstraint(
        "(current_period_start is null) = (current_period_end is null) "
        "and (current_period_start is null or current_period_start < current_period_end)",
        name="period_ordered",
    ),
    sa.Index("ix_subscriptions_tenant_id_customer_id", "tenant_id", "customer_id"),
    # Due work on the real clock, across tenants; and on each test clock.
    sa.Index(
        "ix_subscriptions_real_clock_due",
        "next_due_at",
        postgresql_where=sa.text("test_clock_id is null and next_due_at is not null"),
    ),
    sa.Index(
        "ix_subscriptions_test_clock_due",
        "tenant_id",
        "test_clock_id",
        "next_due_at",
        postgresql_where=sa.text("test_clock_id is not null and next_due_at is not null"),
    ),
)

subscription_history = sa.Table(
    "subscription_history",
    metadata,
    _tenant_id(),
    sa.Column("subscription_id", sa.Uuid, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("at", TIMESTAMP, nullable=False),
    sa.Column("from_status", sa.Text, nullable=True),
    sa.Column("to_status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("plan_version_id", sa.Uuid, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("period_start", TIMESTAMP, nullable=True),
    sa.Column("period_end", TIMESTAMP, nullable=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("details", pg.JSONB, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "subscription_id", "seq", name="pk_subscription_history"),
    _fk(
        "subscription_history",
        ["subscription_id"],
        "subscriptions",
        ["subscription_id"],
        "fk_subscription_history_subscription",
    ),
)

scheduled_changes = sa.Table(
    "scheduled_changes",
    metadata,
    _tenant_id(),
    sa.Column("scheduled_change_id", sa.Uuid, nullable=False),
    sa.Column("subscription_id", sa.Uuid, nullable=False),
    sa.Column("at_period_end", sa.Boolean, nullable=False),
    sa.Column("effective_at", TIMESTAMP, nullable=False),
    sa.Column("plan_version_id", sa.Uuid, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("settled_at", TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "scheduled_change_id", name="pk_scheduled_changes"),
    _fk(
        "scheduled_changes",
        ["subscription_id"],
        "subscriptions",
        ["subscription_id"],
        "fk_scheduled_changes_subscription",
    ),
    _fk(
        "scheduled_changes",
        ["plan_version_id"],
        "plan_versions",
        ["plan_version_id"],
        "fk_scheduled_changes_version",
    ),
    sa.CheckConstraint("status in ('scheduled','applied','canceled')", name="known_status"),
    sa.Index(
        "ix_scheduled_changes_pending",
        "tenant_id",
        "subscription_id",
        "effective_at",
        postgresql_where=sa.text("status = 'scheduled'"),
    ),
)

billing_points = sa.Table(
    "billing_points",
    metadata,
    _tenant_id(),
    sa.Column("billing_point_id", sa.Uuid, nullable=False),
    sa.Column("subscription_id", sa.Uuid, nullable=False),
    sa.Column("history_seq", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", TIMESTAMP, nullable=False),
    sa.Column("period_start", TIMESTAMP, nullable=False),
    sa.Column("period_end", TIMESTAMP, nullable=False),
    sa.Column("fee_lines", pg.JSONB, nullable=False),
    sa.Column("usage", pg.JSONB, nullable=False),
    sa.Column("test_clock_id", sa.Uuid, nullable=True),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "billing_point_id", name="pk_billing_points"),
    # One billing point per transition that made money due: a retried step cannot double it.
    sa.UniqueConstraint(
        "tenant_id",
        "subscription_id",
        "history_seq",
        name="uq_billing_points_tenant_id_subscription_id_history_seq",
    ),
    _fk(
        "billing_points",
        ["subscription_id"],
        "subscriptions",
        ["subscription_id"],
        "fk_billing_points_subscription",
    ),
)

usage_event_ids = sa.Table(
    "usage_event_ids",
    metadata,
    _tenant_id(),
    sa.Column("event_id", sa.Text(collation="C"), nullable=False),
    sa.Column("payload_hash", sa.LargeBinary, nullable=False),
    sa.Column("ts", TIMESTAMP, nullable=False),
    sa.Column("received_at", TIMESTAMP, nullable=False),
    sa.Column("rejected", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "event_id", name="pk_usage_event_ids"),
    _tenant_fk("usage_event_ids"),
)

# Partitioned by month of `ts` (migration 0004 creates it; partitions are usage_events_pYYYYMM).
usage_events = sa.Table(
    "usage_events",
    metadata,
    _tenant_id(),
    sa.Column("subscription_id", sa.Uuid, nullable=False),
    sa.Column("meter_id", sa.Uuid, nullable=False),
    sa.Column("ts", TIMESTAMP, nullable=False),
    # The hourly rollup bucket it falls in, on its subscription's grid (fixed at creation).
    sa.Column("bucket", TIMESTAMP, nullable=False),
    sa.Column("event_id", sa.Text(collation="C"), nullable=False),
    sa.Column("properties", pg.JSONB, nullable=False),
    sa.Column("received_at", TIMESTAMP, nullable=False),
    sa.Column("late", sa.Boolean, nullable=False),
    sa.Column(
        "xact", sa.BigInteger, nullable=False, server_default=sa.text("(pg_current_xact_id()::text)::bigint")
    ),
    sa.PrimaryKeyConstraint(
        "tenant_id", "subscription_id", "meter_id", "ts", "event_id", name="pk_usage_events"
    ),
    sa.Index(
        "ix_usage_events_xact", "xact", postgresql_using="brin", postgresql_with={"pages_per_range": 32}
    ),
    # Late arrivals, which billing claims for the next invoice.
    sa.Index("ix_usage_events_late", "tenant_id", "subscription_id", postgresql_where=sa.text("late")),
    postgresql_partition_by="RANGE (ts)",
)

usage_quarantine = sa.Table(
    "usage_quarantine",
    metadata,
    _tenant_id(),
    sa.Column("event_id", sa.Text(collation="C"), nullable=False),
    sa.Column("meter", sa.Text, nullable=False),
    sa.Column("subscription_ref", sa.Text, nullable=True),
    sa.Column("customer_ref", sa.Text, nullable=True),
    sa.Column("ts", TIMESTAMP, nullable=False),
    sa.Column("properties", pg.JSONB, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("received_at", TIMESTAMP, nullable=False),
    sa.Column("released_at", TIMESTAMP, nullable=True),
    sa.Column("released_to", sa.Uuid, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "event_id", name="pk_usage_quarantine"),
    _tenant_fk("usage_quarantine"),
    sa.CheckConstraint(
        "reason in ('unknown_meter','unknown_customer','unknown_subscription','no_subscription',"
        "'ambiguous_subscription','before_start','after_end','invalid_value')",
        name="known_reason",
    ),
    sa.Index(
        "ix_usage_quarantine_held",
        "tenant_id",
        "received_at",
        postgresql_where=sa.text("released_at is null"),
    ),
)

usage_rollups = sa.Table(
    "usage_rollups",
    metadata,
    _tenant_id(),
    sa.Column("subscription_id", sa.Uuid, nullable=False),
    sa.Column("meter_id", sa.Uuid, nullable=False),
    sa.Column("bucket", TIMESTAMP, nullable=False),
    sa.Column("group_key", sa.Text, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("total", sa.Numeric, nullable=False),
    sa.Column("maximum", sa.Numeric, nullable=True),
    sa.Column("latest_ts", TIMESTAMP, nullable=True),
    sa.Column("latest_value", sa.Numeric, nullable=True),
    sa.Column("latest_event", sa.Text(collation="C"), nullable=True),
    sa.Column("weighted", sa.Numeric, nullable=False),
    sa.PrimaryKeyConstraint(
        "tenant_id", "subscription_id", "meter_id", "bucket", "group_key", name="pk_usage_rollups"
    ),
)

usage_rollup_values = sa.Table(
    "usage_rollup_values",
    metadata,
    _tenant_id(),
    sa.Column("subscription_id", sa.Uuid, nullable=False),
    sa.Column("meter_id", sa.Uuid, nullable=False),
    sa.Column("bucket", TIMESTAMP, nullable=False),
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

usage_rollup_state = sa.Table(
    "usage_rollup_state",
    metadata,
    _tenant_id(),
    sa.Column("xact_watermark", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", name="pk_usage_rollup_state"),
    _tenant_fk("usage_rollup_state"),
)

# Numbers handed out gap-free per tenant: one locked counter row per kind of document.
document_counters = sa.Table(
    "document_counters",
    metadata,
    _tenant_id(),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("last_number", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "kind", name="pk_document_counters"),
    _tenant_fk("document_counters"),
    sa.CheckConstraint("kind in ('invoice','credit_note')", name="known_kind"),
)

# Amounts are integer minor units of `currency`. A finalized invoice is frozen by a trigger
# (migration 0005): only its status and what was paid and credited against it move.
invoices = sa.Table(
    "invoices",
    metadata,
    _tenant_id(),
    sa.Column("invoice_id", sa.Uuid, nullable=False),
    sa.Column("customer_id", sa.Uuid, nullable=False),
    sa.Column("subscription_id", sa.Uuid, nullable=True),
    sa.Column("billing_point_id", sa.Uuid, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("number", sa.Text, nullable=True),
    sa.Column("period_start", TIMESTAMP, nullable=True),
    sa.Column("period_end", TIMESTAMP, nullable=True),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    # When a draft finalizes on its own (its grace period's end); None for manual drafts.
    sa.Column("finalize_at", TIMESTAMP, nullable=True),
    sa.Column("finalized_at", TIMESTAMP, nullable=True),
    sa.Column("due_at", TIMESTAMP, nullable=True),
    sa.Column("paid_at", TIMESTAMP, nullable=True),
    sa.Column("voided_at", TIMESTAMP, nullable=True),
    sa.Column("uncollectible_at", TIMESTAMP, nullable=True),
    sa.Column("subtotal", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("discount", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("tax", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("total", sa.BigInteger, nullable=False, server_default="0"),
    # Customer credit balance used (negative: a credit invoice added to the balance).
    sa.Column("credit_applied", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("amount_due", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("amount_paid", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("amount_credited", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("coupon_id", sa.Uuid, nullable=True),
    sa.Column("seller", pg.JSONB, nullable=False, server_default="{}"),
    sa.Column("buyer", pg.JSONB, nullable=False, server_default="{}"),
    sa.Column("memo", sa.Text, nullable=True),
    sa.Column("test_clock_id", sa.Uuid, nullable=True),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "invoice_id", name="pk_invoices"),
    sa.UniqueConstraint("tenant_id", "number", name="uq_invoices_tenant_id_number"),
    # One invoice per billing point: a retried or racing billing run cannot double one.
    sa.UniqueConstraint("tenant_id", "billing_point_id", name="uq_invoices_tenant_id_billing_point_id"),
    _fk("invoices", ["customer_id"], "customers", ["customer_id"], "fk_invoices_customer"),
    _fk("invoices", ["subscription_id"], "subscriptions", ["subscription_id"], "fk_invoices_subscription"),
    _fk(
        "invoices", ["billing_point_id"], "billing_points", ["billing_point_id"], "fk_invoices_billing_point"
    ),
    _fk("invoices", ["coupon_id"], "coupons", ["coupon_id"], "fk_invoices_coupon"),
    sa.CheckConstraint("status in ('draft','open','paid','void','uncollectible')", name="known_status"),
    sa.CheckConstraint("(status = 'draft') = (number is null)", name="numbered_once_final"),
    sa.Index("ix_invoices_tenant_id_customer_id", "tenant_id", "customer_id"),
    sa.Index("ix_invoices_tenant_id_subscription_id", "tenant_id", "subscription_id"),
    sa.Index(
        "ix_invoices_drafts_due", "tenant_id", "finalize_at", postgresql_where=sa.text("status = 'draft'")
    ),
)

invoice_lines = sa.Table(
    "invoice_lines",
    metadata,
    _tenant_id(),
    sa.Column("invoice_id", sa.Uuid, nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("charge", sa.Text, nullable=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("period_start", TIMESTAMP, nullable=True),
    sa.Column("period_end", TIMESTAMP, nullable=True),
    sa.Column("quantity", sa.Numeric, nullable=False),
    sa.Column("unit_amount", sa.Numeric, nullable=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("discount", sa.BigInteger, nullable=False),
    sa.Column("tax", sa.BigInteger, nullable=False),
    # Each tax rate's share: [{code, name, rate, inclusive, amount}].
    sa.Column("taxes", pg.JSONB, nullable=False),
    sa.Column("plan_version_id", sa.Uuid, nullable=True),
    # A usage line's meter, group and the window it rated (late usage re-rates that window).
    sa.Column("meter_id", sa.Uuid, nullable=True),
    sa.Column("usage_group", sa.Text, nullable=True),
    sa.Column("window_start", TIMESTAMP, nullable=True),
    sa.Column("window_end", TIMESTAMP, nullable=True),
    # How it was computed: the price's parts (tiers, packages, caps).
    sa.Column("details", pg.JSONB, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "invoice_id", "line_no", name="pk_invoice_lines"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "invoice_id"],
        ["invoices.tenant_id", "invoices.invoice_id"],
        name="fk_invoice_lines_invoice",
        ondelete="CASCADE",
    ),
    sa.CheckConstraint(
        "kind in ('fee','proration','usage','minimum','late_usage','one_off')", name="known_kind"
    ),
)

# Which billing points billing has handled, and the invoice each made (None: nothing to bill).
billing_point_results = sa.Table(
    "billing_point_results",
    metadata,
    _tenant_id(),
    sa.Column("billing_point_id", sa.Uuid, nullable=False),
    sa.Column("invoice_id", sa.Uuid, nullable=True),
    sa.Column("processed_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "billing_point_id", name="pk_billing_point_results"),
    _fk(
        "billing_point_results",
        ["billing_point_id"],
        "billing_points",
        ["billing_point_id"],
        "fk_billing_point_results_point",
    ),
)

# Billing points whose invoice could not be composed (bad usage, a catalog problem): set aside,
# with the reason, until an operator retries them; the rest of the run goes on.
billing_failures = sa.Table(
    "billing_failures",
    metadata,
    _tenant_id(),
    sa.Column("billing_point_id", sa.Uuid, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("failed_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "billing_point_id", name="pk_billing_failures"),
    _fk(
        "billing_failures",
        ["billing_point_id"],
        "billing_points",
        ["billing_point_id"],
        "fk_billing_failures_point",
    ),
)

# Billing points without a result, in the billing run's numbering order (instant, then
# subscription creation): the run reads its next batch here, in O(batch) however many points
# were ever written. Kept by triggers (migration 0007): a billing point's insert adds its row,
# its result's insert removes it.
billing_queue = sa.Table(
    "billing_queue",
    metadata,
    _tenant_id(),
    sa.Column("billing_point_id", sa.Uuid, nullable=False),
    sa.Column("at", TIMESTAMP, nullable=False),
    sa.Column("test_clock_id", sa.Uuid, nullable=True),
    sa.Column("subscription_created_at", TIMESTAMP, nullable=False),
    sa.Column("subscription_id", sa.Uuid, nullable=False),
    sa.Column("history_seq", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "billing_point_id", name="pk_billing_queue"),
    _fk(
        "billing_queue",
        ["billing_point_id"],
        "billing_points",
        ["billing_point_id"],
        "fk_billing_queue_point",
    ),
    sa.Index(
        "ix_billing_queue_due",
        "test_clock_id",
        "at",
        "subscription_created_at",
        "subscription_id",
        "history_seq",
    ),
)

# Late events an invoice billed (as late_usage lines), so no later invoice bills them again.
late_usage_claims = sa.Table(
    "late_usage_claims",
    metadata,
    _tenant_id(),
    sa.Column("subscription_id", sa.Uuid, nullable=False),
    sa.Column("meter_id", sa.Uuid, nullable=False),
    sa.Column("ts", TIMESTAMP, nullable=False),
    sa.Column("event_id", sa.Text(collation="C"), nullable=False),
    sa.Column("invoice_id", sa.Uuid, nullable=False),
    sa.PrimaryKeyConstraint(
        "tenant_id", "subscription_id", "meter_id", "ts", "event_id", name="pk_late_usage_claims"
    ),
    sa.ForeignKeyConstraint(
        ["tenant_id", "invoice_id"],
        ["invoices.tenant_id", "invoices.invoice_id"],
        name="fk_late_usage_claims_invoice",
        ondelete="CASCADE",
    ),
)

credit_notes = sa.Table(
    "credit_notes",
    metadata,
    _tenant_id(),
    sa.Column("credit_note_id", sa.Uuid, nullable=False),
    sa.Column("invoice_id", sa.Uuid, nullable=False),
    sa.Column("customer_id", sa.Uuid, nullable=False),
    sa.Column("number", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("tax", sa.BigInteger, nullable=False),
    # Where the credit went: off the invoice's amount remaining, and to the customer's balance.
    sa.Column("to_invoice", sa.BigInteger, nullable=False),
    sa.Column("to_balance", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    # [{line_no, amount, tax}]: what it credits of each invoice line.
    sa.Column("lines", pg.JSONB, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "credit_note_id", name="pk_credit_notes"),
    sa.UniqueConstraint("tenant_id", "number", name="uq_credit_notes_tenant_id_number"),
    _fk("credit_notes", ["invoice_id"], "invoices", ["invoice_id"], "fk_credit_notes_invoice"),
    _fk("credit_notes", ["customer_id"], "customers", ["customer_id"], "fk_credit_notes_customer"),
    sa.Index("ix_credit_notes_tenant_id_invoice_id", "tenant_id", "invoice_id"),
)

payments = sa.Table(
    "payments",
    metadata,
    _tenant_id(),
    sa.Column("payment_id", sa.Uuid, nullable=False),
    sa.Column("customer_id", sa.Uuid, nullable=False),
    sa.Column("invoice_id", sa.Uuid, nullable=True),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reference", sa.Text, nullable=True),
    sa.Column("failure_reason", sa.Text, nullable=True),
    # Where a successful payment went: its invoice, and any overpayment to the balance.
    sa.Column("to_invoice", sa.BigInteger, nullable=False),
    sa.Column("to_balance", sa.BigInteger, nullable=False),
    sa.Column("received_at", TIMESTAMP, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "payment_id", name="pk_payments"),
    _fk("payments", ["customer_id"], "customers", ["customer_id"], "fk_payments_customer"),
    _fk("payments", ["invoice_id"], "invoices", ["invoice_id"], "fk_payments_invoice"),
    sa.CheckConstraint("outcome in ('succeeded','failed')", name="known_outcome"),
    sa.Index("ix_payments_tenant_id_invoice_id", "tenant_id", "invoice_id"),
)

# A customer's credit balance per currency is the sum of its entries (positive: in its favour).
customer_balance_entries = sa.Table(
    "customer_balance_entries",
    metadata,
    _tenant_id(),
    sa.Column("entry_id", sa.Uuid, nullable=False),
    sa.Column("customer_id", sa.Uuid, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_id", sa.Uuid, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "entry_id", name="pk_customer_balance_entries"),
    _fk(
        "customer_balance_entries",
        ["customer_id"],
        "customers",
        ["customer_id"],
        "fk_customer_balance_entries_customer",
    ),
    sa.CheckConstraint("source in ('credit_note','payment','invoice','adjustment')", name="known_source"),
    sa.Index("ix_customer_balance_entries_tenant_id_customer_id", "tenant_id", "customer_id"),
)

# The double-entry ledger (migration 0008_ledger): an entry per financial fact, once per kind
# and source; its lines in minor units, debits positive, credits negative,
# balanced per currency at commit by a deferred constraint trigger; both append-only.
LEDGER_ACCOUNTS = (
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
LEDGER_ENTRY_KINDS = ("invoice_finalized", "payment", "credit_note", "invoice_voided", "invoice_written_off")

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    _tenant_id(),
    sa.Column("entry_id", sa.Uuid, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("effective_at", TIMESTAMP, nullable=False),
    sa.Column("customer_id", sa.Uuid, nullable=True),
    sa.Column("invoice_id", sa.Uuid, nullable=True),
    sa.Column("source_id", sa.Uuid, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    # The writing transaction: only it may write the entry's lines.
    sa.Column("xid", Xid8, nullable=False, server_default=sa.text("pg_current_xact_id()")),
    # When the fact happened, when that fell in a closed month (posted in the next open one).
    sa.Column("original_effective_at", TIMESTAMP, nullable=True),
    sa.PrimaryKeyConstraint("tenant_id", "entry_id", name="pk_ledger_entries"),
    _tenant_fk("ledger_entries"),
    sa.UniqueConstraint("tenant_id", "entry_id", "xid", name="uq_ledger_entries_tenant_id_entry_id_xid"),
    # A fact is posted once: its kind and source are its idempotency key.
    sa.UniqueConstraint("tenant_id", "kind", "source_id", name="uq_ledger_entries_tenant_id_kind_source_id"),
    sa.CheckConstraint(
        "kind IN ('invoice_finalized', 'payment', 'credit_note', 'invoice_voided', 'invoice_written_off')",
        name="known_kind",
    ),
    sa.Index("ix_ledger_entries_tenant_id_invoice_id", "tenant_id", "invoice_id"),
)

# Closes and reopens of accounting months (migration 0009_period_close): a month's state is its
# latest change; no ledger entry may be effective in a closed month.
accounting_period_changes = sa.Table(
    "accounting_period_changes",
    metadata,
    _tenant_id(),
    sa.Column("change_id", sa.Uuid, nullable=False),
    sa.Column("month", sa.Date, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("changed_at", TIMESTAMP, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "change_id", name="pk_accounting_period_changes"),
    _tenant_fk("accounting_period_changes"),
    sa.CheckConstraint("extract(day FROM month) = 1", name="first_of_month"),
    sa.CheckConstraint("action IN ('close', 'reopen')", name="known_action"),
    sa.CheckConstraint("action = 'close' OR reason IS NOT NULL", name="reopen_has_reason"),
    sa.Index("ix_accounting_period_changes_tenant_id_month", "tenant_id", "month", "change_id"),
)

ledger_lines = sa.Table(
    "ledger_lines",
    metadata,
    _tenant_id(),
    sa.Column("entry_id", sa.Uuid, nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("account", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("invoice_line_no", sa.Integer, nullable=True),
    sa.Column("xid", Xid8, nullable=False, server_default=sa.text("pg_current_xact_id()")),
    sa.PrimaryKeyConstraint("tenant_id", "entry_id", "line_no", name="pk_ledger_lines"),
    _fk("ledger_lines", ["entry_id", "xid"], "ledger_entries", ["entry_id", "xid"], "fk_ledger_lines_entry"),
    sa.CheckConstraint(f"account IN ({', '.join(repr(a) for a in LEDGER_ACCOUNTS)})", name="known_account"),
    sa.CheckConstraint("amount <> 0", name="not_zero"),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    _tenant_id(),
    sa.Column("endpoint_id", sa.Uuid, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    # Event types or `<entity>.*` patterns delivered here; empty: every type.
    sa.Column("event_types", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("disabled_at", TIMESTAMP),
    # Since when every attempt has failed (none since a success); five days of it disable.
    sa.Column("failing_since", TIMESTAMP),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    # The creating transaction: the relay hands on only events of later transactions.
    sa.Column("created_xid", Xid8, nullable=False, server_default=sa.text("pg_current_xact_id()")),
    sa.PrimaryKeyConstraint("tenant_id", "endpoint_id", name="pk_webhook_endpoints"),
    _tenant_fk("webhook_endpoints"),
    sa.CheckConstraint("length(url) between 1 and 2048", name="url_length"),
    sa.CheckConstraint("disabled_reason in ('manual','gone','failing')", name="known_disabled_reason"),
    sa.CheckConstraint("enabled = (disabled_reason is null)", name="disabled_has_reason"),
)

webhook_secrets = sa.Table(
    "webhook_secrets",
    metadata,
    _tenant_id(),
    sa.Column("secret_id", sa.Uuid, nullable=False),
    sa.Column("endpoint_id", sa.Uuid, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    # A rotated-out secret still signs until then; null: the current secret.
    sa.Column("expires_at", TIMESTAMP),
    sa.PrimaryKeyConstraint("tenant_id", "secret_id", name="pk_webhook_secrets"),
    _fk(
        "webhook_secrets",
        ["endpoint_id"],
        "webhook_endpoints",
        ["endpoint_id"],
        "fk_webhook_secrets_endpoint",
    ),
    sa.CheckConstraint("secret ~ '^whsec_[A-Za-z0-9+/=]{32,}$'", name="format"),
    sa.Index("ix_webhook_secrets_tenant_id_endpoint_id", "tenant_id", "endpoint_id"),
)

# The relay's high-water mark: every outbox event of a transaction below it has been handed on.
outbox_relay = sa.Table(
    "outbox_relay",
    metadata,
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("watermark", Xid8, nullable=False),
    sa.Column("updated_at", TIMESTAMP),
    sa.PrimaryKeyConstraint("name", name="pk_outbox_relay"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    _tenant_id(),
    sa.Column("delivery_id", sa.Uuid, nullable=False),
    sa.Column("endpoint_id", sa.Uuid, nullable=False),
    sa.Column("event_id", sa.Uuid, nullable=False),
    # The event's outbox sequence: deliveries of one entity to one endpoint go in this order.
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("entity_type", sa.Text, nullable=False),
    sa.Column("entity_id", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
    # A relay sending it holds it until then; after, another relay may send it again.
    sa.Column("leased_until", TIMESTAMP),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("completed_at", TIMESTAMP),
    sa.PrimaryKeyConstraint("tenant_id", "delivery_id", name="pk_webhook_deliveries"),
    _fk(
        "webhook_deliveries",
        ["endpoint_id"],
        "webhook_endpoints",
        ["endpoint_id"],
        "fk_webhook_deliveries_endpoint",
    ),
    _fk("webhook_deliveries", ["event_id"], "outbox_events", ["event_id"], "fk_webhook_deliveries_event"),
    sa.CheckConstraint("origin in ('relay','redeliver','replay')", name="known_origin"),
    sa.CheckConstraint("status in ('pending','succeeded','failed')", name="known_status"),
    sa.CheckConstraint("attempts >= 0", name="attempts_range"),
    sa.Index(
        "uq_webhook_deliveries_relayed",
        "tenant_id",
        "endpoint_id",
        "event_id",
        unique=True,
        postgresql_where=sa.text("origin = 'relay'"),
    ),
    sa.Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
    sa.Index(
        "ix_webhook_deliveries_entity",
        "tenant_id",
        "endpoint_id",
        "entity_type",
        "entity_id",
        "seq",
        postgresql_where=sa.text("status = 'pending'"),
    ),
    # Not led by the endpoint on purpose: the claim's check for an earlier pending delivery of
    # the same entity must have only ix_webhook_deliveries_entity to choose from.
    sa.Index("ix_webhook_deliveries_tenant_id_created_at", "tenant_id", "created_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    _tenant_id(),
    sa.Column("attempt_id", sa.Uuid, nullable=False),
    sa.Column("delivery_id", sa.Uuid, nullable=False),
    sa.Column("endpoint_id", sa.Uuid, nullable=False),
    sa.Column("event_id", sa.Uuid, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("attempted_at", TIMESTAMP, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("request_headers", pg.JSONB, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("response_body", sa.Text),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "attempt_id", name="pk_webhook_attempts"),
    _fk(
        "webhook_attempts",
        ["delivery_id"],
        "webhook_deliveries",
        ["delivery_id"],
        "fk_webhook_attempts_delivery",
    ),
    sa.CheckConstraint("outcome in ('succeeded','failed','gone')", name="known_outcome"),
    sa.Index("ix_webhook_attempts_tenant_id_delivery_id", "tenant_id", "delivery_id"),
)

PARTITION_PREFIX = "usage_events_p"

# Tables of the installation, not of a tenant (no tenant_id): the relay serves every tenant.
GLOBAL_TABLES = ("outbox_relay",)

APPEND_ONLY_TABLES = (
    "audit_log",
    "outbox_events",
    "subscription_history",
    "billing_points",
    "usage_events",
    "usage_event_ids",
    "billing_point_results",
    "credit_notes",
    "payments",
    "customer_balance_entries",
    "webhook_attempts",
    "ledger_entries",
    "ledger_lines",
    "accounting_period_changes",
)
