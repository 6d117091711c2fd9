"""Invoices: drafts and finalized documents, gap-free numbers, credit notes, payments, balances.

Revision ID: 0005_invoices
Revises: 0004_usage
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0005_invoices"
down_revision = "0004_usage"
branch_labels = None
depends_on = None

TENANT_SETTINGS = """
ALTER TABLE tenants
    ADD COLUMN grace_period_days integer NOT NULL DEFAULT 0,
    ADD COLUMN payment_terms_days integer NOT NULL DEFAULT 0,
    ADD COLUMN invoice_prefix text NOT NULL DEFAULT 'ACC-',
    ADD COLUMN credit_note_prefix text NOT NULL DEFAULT 'CN-',
    ADD COLUMN zero_amount_invoices text NOT NULL DEFAULT 'mark_paid',
    ADD COLUMN seller jsonb NOT NULL DEFAULT '{}',
    ADD CONSTRAINT ck_tenants_grace_range CHECK (grace_period_days between 0 and 365),
    ADD CONSTRAINT ck_tenants_payment_terms_range CHECK (payment_terms_days between 0 and 365),
    ADD CONSTRAINT ck_tenants_invoice_prefix_format CHECK (invoice_prefix ~ '^[A-Za-z0-9_/-]{0,16}$'),
    ADD CONSTRAINT ck_tenants_credit_note_prefix_format CHECK (credit_note_prefix ~ '^[A-Za-z0-9_/-]{0,16}$'),
    ADD CONSTRAINT ck_tenants_known_zero_amount_invoices
        CHECK (zero_amount_invoices in ('mark_paid','leave_open'))
"""

TABLES = """
ALTER TABLE customers ADD COLUMN payment_terms_days integer,
    ADD CONSTRAINT ck_customers_payment_terms_range CHECK (payment_terms_days between 0 and 365);

CREATE TABLE document_counters (
    tenant_id uuid NOT NULL,
    kind text NOT NULL,
    last_number bigint NOT NULL,
    CONSTRAINT pk_document_counters PRIMARY KEY (tenant_id, kind),
    CONSTRAINT fk_document_counters_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id),
    CONSTRAINT ck_document_counters_known_kind CHECK (kind in ('invoice','credit_note'))
);

CREATE TABLE invoices (
    tenant_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    customer_id uuid NOT NULL,
    subscription_id uuid,
    billing_point_id uuid,
    reason text NOT NULL,
    status text NOT NULL,
    currency text NOT NULL,
    number text,
    period_start timestamptz,
    period_end timestamptz,
    created_at timestamptz NOT NULL,
    finalize_at timestamptz,
    finalized_at timestamptz,
    due_at timestamptz,
    paid_at timestamptz,
    voided_at timestamptz,
    uncollectible_at timestamptz,
    subtotal bigint NOT NULL DEFAULT 0,
    discount bigint NOT NULL DEFAULT 0,
    tax bigint NOT NULL DEFAULT 0,
    total bigint NOT NULL DEFAULT 0,
    credit_applied bigint NOT NULL DEFAULT 0,
    amount_due bigint NOT NULL DEFAULT 0,
    amount_paid bigint NOT NULL DEFAULT 0,
    amount_credited bigint NOT NULL DEFAULT 0,
    coupon_id uuid,
    seller jsonb NOT NULL DEFAULT '{}',
    buyer jsonb NOT NULL DEFAULT '{}',
    memo text,
    test_clock_id uuid,
    updated_at timestamptz NOT NULL,
    CONSTRAINT pk_invoices PRIMARY KEY (tenant_id, invoice_id),
    CONSTRAINT uq_invoices_tenant_id_number UNIQUE (tenant_id, number),
    CONSTRAINT uq_invoices_tenant_id_billing_point_id UNIQUE (tenant_id, billing_point_id),
    CONSTRAINT fk_invoices_customer FOREIGN KEY (tenant_id, customer_id)
        REFERENCES customers (tenant_id, customer_id),
    CONSTRAINT fk_invoices_subscription FOREIGN KEY (tenant_id, subscription_id)
        REFERENCES subscriptions (tenant_id, subscription_id),
    CONSTRAINT fk_invoices_billing_point FOREIGN KEY (tenant_id, billing_point_id)
        REFERENCES billing_points (tenant_id, billing_point_id),
    CONSTRAINT fk_invoices_coupon FOREIGN KEY (tenant_id, coupon_id) REFERENCES coupons (tenant_id, coupon_id),
    CONSTRAINT ck_invoices_known_status CHECK (status in ('draft','open','paid','void','uncollectible')),
    CONSTRAINT ck_invoices_numbered_once_final CHECK ((status = 'draft') = (number is null)),
    CONSTRAINT ck_invoices_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT ck_invoices_period_ordered CHECK (period_start is null or period_start < period_end),
    CONSTRAINT ck_invoices_total_adds_up CHECK (total = subtotal - discount + tax
        or total = subtotal - discount),
    CONSTRAINT ck_invoices_due_adds_up CHECK (amount_due = total - credit_applied and amount_due >= 0),
    CONSTRAINT ck_invoices_settled_within_due CHECK (
        amount_paid >= 0 and amount_credited >= 0 and amount_paid + amount_credited <= amount_due)
);
CREATE INDEX ix_invoices_tenant_id_customer_id ON invoices (tenant_id, customer_id);
CREATE INDEX ix_invoices_tenant_id_subscription_id ON invoices (tenant_id, subscription_id);
CREATE INDEX ix_invoices_drafts_due ON invoices (tenant_id, finalize_at) WHERE status = 'draft';

CREATE TABLE invoice_lines (
    tenant_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    line_no integer NOT NULL,
    kind text NOT NULL,
    charge text,
    description text NOT NULL,
    period_start timestamptz,
    period_end timestamptz,
    quantity numeric NOT NULL,
    unit_amount numeric,
    amount bigint NOT NULL,
    discount bigint NOT NULL,
    tax bigint NOT NULL,
    taxes jsonb NOT NULL,
    plan_version_id uuid,
    meter_id uuid,
    usage_group text,
    window_start timestamptz,
    window_end timestamptz,
    details jsonb NOT NULL,
    CONSTRAINT pk_invoice_lines PRIMARY KEY (tenant_id, invoice_id, line_no),
    CONSTRAINT fk_invoice_lines_invoice FOREIGN KEY (tenant_id, invoice_id)
        REFERENCES invoices (tenant_id, invoice_id) ON DELETE CASCADE,
    CONSTRAINT ck_invoice_lines_known_kind CHECK (kind in ('fee','proration','usage','minimum','late_usage','one_off')),
    CONSTRAINT ck_invoice_lines_period_ordered CHECK (period_start is null or period_start < period_end),
    CONSTRAINT ck_invoice_lines_discount_within_amount CHECK (discount >= 0 and (discount = 0 or discount <= amount))
);

CREATE TABLE billing_point_results (
    tenant_id uuid NOT NULL,
    billing_point_id uuid NOT NULL,
    invoice_id uuid,
    processed_at timestamptz NOT NULL,
    CONSTRAINT pk_billing_point_results PRIMARY KEY (tenant_id, billing_point_id),
    CONSTRAINT fk_billing_point_results_point FOREIGN KEY (tenant_id, billing_point_id)
        REFERENCES billing_points (tenant_id, billing_point_id)
);

CREATE TABLE billing_failures (
    tenant_id uuid NOT NULL,
    billing_point_id uuid NOT NULL,
    error text NOT NULL,
    failed_at timestamptz NOT NULL,
    CONSTRAINT pk_billing_failures PRIMARY KEY (tenant_id, billing_point_id),
    CONSTRAINT fk_billing_failures_point FOREIGN KEY (tenant_id, billing_point_id)
        REFERENCES billing_points (tenant_id, billing_point_id)
);

CREATE TABLE late_usage_claims (
    tenant_id uuid NOT NULL,
    subscription_id uuid NOT NULL,
    meter_id uuid NOT NULL,
    ts timestamptz NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    invoice_id uuid NOT NULL,
    CONSTRAINT pk_late_usage_claims PRIMARY KEY (tenant_id, subscription_id, meter_id, ts, event_id),
    CONSTRAINT fk_late_usage_claims_invoice FOREIGN KEY (tenant_id, invoice_id)
        REFERENCES invoices (tenant_id, invoice_id) ON DELETE CASCADE
);
CREATE INDEX ix_usage_events_late ON usage_events (tenant_id, subscription_id) WHERE late;

CREATE TABLE credit_notes (
    tenant_id uuid NOT NULL,
    credit_note_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    customer_id uuid NOT NULL,
    number text NOT NULL,
    currency text NOT NULL,
    amount bigint NOT NULL,
    tax bigint NOT NULL,
    to_invoice bigint NOT NULL,
    to_balance bigint NOT NULL,
    reason text NOT NULL,
    lines jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL,
    CONSTRAINT pk_credit_notes PRIMARY KEY (tenant_id, credit_note_id),
    CONSTRAINT uq_credit_notes_tenant_id_number UNIQUE (tenant_id, number),
    CONSTRAINT fk_credit_notes_invoice FOREIGN KEY (tenant_id, invoice_id)
        REFERENCES invoices (tenant_id, invoice_id),
    CONSTRAINT fk_credit_notes_customer FOREIGN KEY (tenant_id, customer_id)
        REFERENCES customers (tenant_id, customer_id),
    CONSTRAINT ck_credit_notes_positive CHECK (amount > 0 and to_invoice >= 0 and to_balance >= 0
        and to_invoice + to_balance = amount)
);
CREATE INDEX ix_credit_notes_tenant_id_invoice_id ON credit_notes (tenant_id, invoice_id);

CREATE TABLE payments (
    tenant_id uuid NOT NULL,
    payment_id uuid NOT NULL,
    customer_id uuid NOT NULL,
    invoice_id uuid,
    currency text NOT NULL,
    amount bigint NOT NULL,
    method text NOT NULL,
    outcome text NOT NULL,
    reference text,
    failure_reason text,
    to_invoice bigint NOT NULL,
    to_balance bigint NOT NULL,
    received_at timestamptz NOT NULL,
    created_by text NOT NULL,
    CONSTRAINT pk_payments PRIMARY KEY (tenant_id, payment_id),
    CONSTRAINT fk_payments_customer FOREIGN KEY (tenant_id, customer_id)
        REFERENCES customers (tenant_id, customer_id),
    CONSTRAINT fk_payments_invoice FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, invoice_id),
    CONSTRAINT ck_payments_known_outcome CHECK (outcome in ('succeeded','failed')),
    CONSTRAINT ck_payments_amounts CHECK (amount > 0 and to_invoice >= 0 and to_balance >= 0
        and (outcome = 'failed' and to_invoice = 0 and to_balance = 0
             or outcome = 'succeeded' and to_invoice + to_balance = amount))
);
CREATE INDEX ix_payments_tenant_id_invoice_id ON payments (tenant_id, invoice_id);

CREATE TABLE customer_balance_entries (
    tenant_id uuid NOT NULL,
    entry_id uuid NOT NULL,
    customer_id uuid NOT NULL,
    currency text NOT NULL,
    amount bigint NOT NULL,
    source text NOT NULL,
    source_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT pk_customer_balance_entries PRIMARY KEY (tenant_id, entry_id),
    CONSTRAINT fk_customer_balance_entries_customer FOREIGN KEY (tenant_id, customer_id)
        REFERENCES customers (tenant_id, customer_id),
    CONSTRAINT ck_customer_balance_entries_known_source
        CHECK (source in ('credit_note','payment','invoice','adjustment'))
);
CREATE INDEX ix_customer_balance_entries_tenant_id_customer_id
    ON customer_balance_entries (tenant_id, customer_id);
"""

# A finalized invoice is a fact: its amounts, number, lines and parties never change again.
# Only its status moves (open -> paid | void | uncollectible, uncollectible -> paid | void),
# with what was paid and credited against it; a draft may be edited and deleted.
GUARDS = """
CREATE FUNCTION accrual_invoice_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is finalized: it is append-only and cannot be deleted', OLD.number
                USING ERRCODE = 'AC001';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'draft' THEN
        IF NEW.status NOT IN ('draft', 'open', 'paid') THEN
            RAISE EXCEPTION 'a draft invoice is finalized before it is %', NEW.status USING ERRCODE = 'AC001';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.tenant_id, NEW.invoice_id, NEW.customer_id, NEW.subscription_id, NEW.billing_point_id, NEW.reason,
        NEW.currency, NEW.number, NEW.period_start, NEW.period_end, NEW.created_at, NEW.finalized_at,
        NEW.due_at, NEW.subtotal, NEW.discount, NEW.tax, NEW.total, NEW.credit_applied, NEW.amount_due,
        NEW.coupon_id, NEW.seller, NEW.buyer, NEW.memo, NEW.test_clock_id)
       IS DISTINCT FROM
       (OLD.tenant_id, OLD.invoice_id, OLD.customer_id, OLD.subscription_id, OLD.billing_point_id, OLD.reason,
        OLD.currency, OLD.number, OLD.period_start, OLD.period_end, OLD.created_at, OLD.finalized_at,
        OLD.due_at, OLD.subtotal, OLD.discount, OLD.tax, OLD.total, OLD.credit_applied, OLD.amount_due,
        OLD.coupon_id, OLD.seller, OLD.buyer, OLD.memo, OLD.test_clock_id) THEN
        RAISE EXCEPTION 'invoice % is finalized: its contents are append-only', OLD.number USING ERRCODE = 'AC001';
    END IF;
    IF NEW.status <> OLD.status AND NOT (
        OLD.status = 'open' AND NEW.status IN ('paid', 'void', 'uncollectible')
        OR OLD.status = 'uncollectible' AND NEW.status IN ('paid', 'void')) THEN
        RAISE EXCEPTION 'invoice % cannot go from % to %', OLD.number, OLD.status, NEW.status
            USING ERRCODE = 'AC001';
    END IF;
    IF NEW.amount_paid < OLD.amount_paid OR NEW.amount_credited < OLD.amount_credited THEN
        RAISE EXCEPTION 'invoice %: what was paid and credited on it only grows', OLD.number
            USING ERRCODE = 'AC001';
    END IF;
    IF OLD.status IN ('paid', 'void') AND (NEW.amount_paid, NEW.amount_credited)
        IS DISTINCT FROM (OLD.amount_paid, OLD.amount_credited) THEN
        RAISE EXCEPTION 'invoice % is %: nothing more is settled against it', OLD.number, OLD.status
            USING ERRCODE = 'AC001';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER invoices_guard BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION accrual_invoice_guard();
CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change();

CREATE FUNCTION accrual_invoice_line_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent record;
BEGIN
    -- Both the invoice a row leaves (OLD) and the one it joins (NEW) must be drafts. A parent
    -- already gone is a draft being deleted (the cascade).
    FOR parent IN
        SELECT status, number FROM invoices
         WHERE (TG_OP <> 'INSERT' AND tenant_id = OLD.tenant_id AND invoice_id = OLD.invoice_id)
            OR (TG_OP <> 'DELETE' AND tenant_id = NEW.tenant_id AND invoice_id = NEW.invoice_id)
    LOOP
        IF parent.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is finalized: its % are append-only', parent.number, TG_TABLE_NAME
                USING ERRCODE = 'AC001';
        END IF;
    END LOOP;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER invoice_lines_guard BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION accrual_invoice_line_guard();
CREATE TRIGGER invoice_lines_no_truncate BEFORE TRUNCATE ON invoice_lines
    FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change();

-- A finalized invoice's claims on late events are facts too: removing one would bill them again.
CREATE TRIGGER late_usage_claims_guard BEFORE UPDATE OR DELETE ON late_usage_claims
    FOR EACH ROW EXECUTE FUNCTION accrual_invoice_line_guard();
CREATE TRIGGER late_usage_claims_no_truncate BEFORE TRUNCATE ON late_usage_claims
    FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change();
"""

APPEND_ONLY = ("billing_point_results", "credit_notes", "payments", "customer_balance_entries")


def upgrade() -> None:
    op.execute(TENANT_SETTINGS)
    op.execute(TABLES)
    op.execute(GUARDS)
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION accrual_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change()"
        )


def downgrade() -> None:
    for table in (
        "customer_balance_entries",
        "payments",
        "credit_notes",
        "late_usage_claims",
        "billing_failures",
        "billing_point_results",
        "invoice_lines",
        "invoices",
        "document_counters",
    ):
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP INDEX ix_usage_events_late")
    op.execute("DROP FUNCTION accrual_invoice_line_guard(); DROP FUNCTION accrual_invoice_guard()")
    op.execute(
        "ALTER TABLE customers DROP CONSTRAINT ck_customers_payment_terms_range, DROP COLUMN payment_terms_days"
    )
    op.execute(
        "ALTER TABLE tenants DROP CONSTRAINT ck_tenants_grace_range, "
        "DROP CONSTRAINT ck_tenants_payment_terms_range, DROP CONSTRAINT ck_tenants_invoice_prefix_format, "
        "DROP CONSTRAINT ck_tenants_credit_note_prefix_format, "
        "DROP CONSTRAINT ck_tenants_known_zero_amount_invoices, DROP COLUMN grace_period_days, "
        "DROP COLUMN payment_terms_days, DROP COLUMN invoice_prefix, DROP COLUMN credit_note_prefix, "
        "DROP COLUMN zero_amount_invoices, DROP COLUMN seller"
    )
