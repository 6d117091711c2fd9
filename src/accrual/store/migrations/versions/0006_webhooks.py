"""Webhooks: endpoints and their secrets, the relay's high-water mark, deliveries and attempts.

Revision ID: 0006_webhooks
Revises: 0005_invoices
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0006_webhooks"
down_revision = "0005_invoices"
branch_labels = None
depends_on = None

TENANT_SETTINGS = """
ALTER TABLE tenants
    ADD COLUMN allow_insecure_webhooks boolean NOT NULL DEFAULT false,
    ADD COLUMN webhook_allowed_networks text[] NOT NULL DEFAULT '{}'
"""

TABLES = """
CREATE TABLE webhook_endpoints (
    tenant_id uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    event_types text[] NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    disabled_at timestamptz,
    failing_since timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    created_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT pk_webhook_endpoints PRIMARY KEY (tenant_id, endpoint_id),
    CONSTRAINT fk_webhook_endpoints_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id),
    CONSTRAINT ck_webhook_endpoints_url_length CHECK (length(url) between 1 and 2048),
    CONSTRAINT ck_webhook_endpoints_known_disabled_reason
        CHECK (disabled_reason in ('manual','gone','failing')),
    CONSTRAINT ck_webhook_endpoints_disabled_has_reason CHECK (enabled = (disabled_reason is null))
);

CREATE TABLE webhook_secrets (
    tenant_id uuid NOT NULL,
    secret_id uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    secret text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    CONSTRAINT pk_webhook_secrets PRIMARY KEY (tenant_id, secret_id),
    CONSTRAINT fk_webhook_secrets_endpoint FOREIGN KEY (tenant_id, endpoint_id)
        REFERENCES webhook_endpoints (tenant_id, endpoint_id),
    CONSTRAINT ck_webhook_secrets_format CHECK (secret ~ '^whsec_[A-Za-z0-9+/=]{32,}$')
);
CREATE INDEX ix_webhook_secrets_tenant_id_endpoint_id ON webhook_secrets (tenant_id, endpoint_id);

CREATE TABLE outbox_relay (
    name text NOT NULL,
    watermark xid8 NOT NULL,
    updated_at timestamptz,
    CONSTRAINT pk_outbox_relay PRIMARY KEY (name)
);
-- Every event whose transaction id is below the watermark has been handed to delivery.
INSERT INTO outbox_relay (name, watermark) VALUES ('webhooks', pg_snapshot_xmin(pg_current_snapshot()));
CREATE INDEX ix_outbox_events_xid ON outbox_events (xid);
-- Pulling a tenant's events in the relay's order.
CREATE INDEX ix_outbox_events_tenant_id_xid ON outbox_events (tenant_id, xid, seq);

CREATE TABLE webhook_deliveries (
    tenant_id uuid NOT NULL,
    delivery_id uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    event_id uuid NOT NULL,
    seq bigint NOT NULL,
    event_type text NOT NULL,
    entity_type text NOT NULL,
    entity_id text NOT NULL,
    origin text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    leased_until timestamptz,
    last_status_code integer,
    last_error text,
    created_at timestamptz NOT NULL,
    completed_at timestamptz,
    CONSTRAINT pk_webhook_deliveries PRIMARY KEY (tenant_id, delivery_id),
    CONSTRAINT fk_webhook_deliveries_endpoint FOREIGN KEY (tenant_id, endpoint_id)
        REFERENCES webhook_endpoints (tenant_id, endpoint_id),
    CONSTRAINT fk_webhook_deliveries_event FOREIGN KEY (tenant_id, event_id)
        REFERENCES outbox_events (tenant_id, event_id),
    CONSTRAINT ck_webhook_deliveries_known_origin CHECK (origin in ('relay','redeliver','replay')),
    CONSTRAINT ck_webhook_deliveries_known_status CHECK (status in ('pending','succeeded','failed')),
    CONSTRAINT ck_webhook_deliveries_attempts_range CHECK (attempts >= 0)
);
-- The relay hands each event to each endpoint once.
CREATE UNIQUE INDEX uq_webhook_deliveries_relayed ON webhook_deliveries (tenant_id, endpoint_id, event_id)
    WHERE origin = 'relay';
CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX ix_webhook_deliveries_entity ON webhook_deliveries (tenant_id, endpoint_id, entity_type, entity_id, seq)
    WHERE status = 'pending';
-- Listing (an endpoint's, newest first). Not led by the endpoint on purpose: the check for an
-- earlier pending delivery of the same entity must find only ix_webhook_deliveries_entity.
CREATE INDEX ix_webhook_deliveries_tenant_id_created_at ON webhook_deliveries (tenant_id, created_at);

CREATE TABLE webhook_attempts (
    tenant_id uuid NOT NULL,
    attempt_id uuid NOT NULL,
    delivery_id uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    event_id uuid NOT NULL,
    attempt integer NOT NULL,
    attempted_at timestamptz NOT NULL,
    url text NOT NULL,
    request_headers jsonb NOT NULL,
    status_code integer,
    response_body text,
    latency_ms integer NOT NULL,
    error text,
    outcome text NOT NULL,
    CONSTRAINT pk_webhook_attempts PRIMARY KEY (tenant_id, attempt_id),
    CONSTRAINT fk_webhook_attempts_delivery FOREIGN KEY (tenant_id, delivery_id)
        REFERENCES webhook_deliveries (tenant_id, delivery_id),
    CONSTRAINT ck_webhook_attempts_known_outcome CHECK (outcome in ('succeeded','failed','gone'))
);
CREATE INDEX ix_webhook_attempts_tenant_id_delivery_id ON webhook_attempts (tenant_id, delivery_id);

-- Wake relays when events commit (one notification per statement, delivered at commit).
CREATE FUNCTION accrual_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('accrual_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION accrual_outbox_notify();

CREATE TRIGGER webhook_attempts_append_only BEFORE UPDATE OR DELETE ON webhook_attempts
    FOR EACH ROW EXECUTE FUNCTION accrual_refuse_change();
CREATE TRIGGER webhook_attempts_no_truncate BEFORE TRUNCATE ON webhook_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION accrual_refuse_change();
"""


def upgrade() -> None:
    op.execute(TENANT_SETTINGS)
    op.execute(TABLES)


def downgrade() -> None:
    op.execute("DROP TRIGGER outbox_events_notify ON outbox_events; DROP FUNCTION accrual_outbox_notify()")
    for table in (
        "webhook_attempts",
        "webhook_deliveries",
        "outbox_relay",
        "webhook_secrets",
        "webhook_endpoints",
    ):
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP INDEX ix_outbox_events_xid; DROP INDEX ix_outbox_events_tenant_id_xid")
    op.execute(
        "ALTER TABLE tenants DROP COLUMN allow_insecure_webhooks, DROP COLUMN webhook_allowed_networks"
    )
