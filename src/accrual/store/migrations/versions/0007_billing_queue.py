"""A queue of unbilled billing points, so a billing run finds its next points in O(batch).

Revision ID: 0007_billing_queue
Revises: 0006_webhooks
Create Date: 2026-11-25

Finding the next points by anti-joining every billing point with its result costs as much as
all the points ever written, and grows with them. The queue holds one row per point without a
result, ordered by an index in the run's numbering order (instant, then subscription creation),
and PostgreSQL keeps it: a trigger adds a row with every billing point, another removes it with
the point's result. Points set aside (`billing_failures`) stay queued, and the run skips them.
"""

from __future__ import annotations

from alembic import op

revision = "0007_billing_queue"
down_revision = "0006_webhooks"
branch_labels = None
depends_on = None

TABLE = """
CREATE TABLE billing_queue (
    tenant_id uuid NOT NULL,
    billing_point_id uuid NOT NULL,
    at timestamptz NOT NULL,
    test_clock_id uuid,
    subscription_created_at timestamptz NOT NULL,
    subscription_id uuid NOT NULL,
    history_seq integer NOT NULL,
    CONSTRAINT pk_billing_queue PRIMARY KEY (tenant_id, billing_point_id),
    CONSTRAINT fk_billing_queue_point FOREIGN KEY (tenant_id, billing_point_id)
        REFERENCES billing_points (tenant_id, billing_point_id)
);
CREATE INDEX ix_billing_queue_due
    ON billing_queue (test_clock_id, at, subscription_created_at, subscription_id, history_seq);
"""

# Row triggers: each is one lookup by primary key, whatever the planner thinks of a batch.
TRIGGERS = """
CREATE FUNCTION accrual_billing_queue_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO billing_queue (tenant_id, billing_point_id, at, test_clock_id, subscription_created_at,
                               subscription_id, history_seq)
    SELECT NEW.tenant_id, NEW.billing_point_id, NEW.at, NEW.test_clock_id, s.created_at,
           NEW.subscription_id, NEW.history_seq
      FROM subscriptions s
     WHERE s.tenant_id = NEW.tenant_id AND s.subscription_id = NEW.subscription_id;
    RETURN NULL;
END $$;
CREATE TRIGGER billing_points_enqueue AFTER INSERT ON billing_points
    FOR EACH ROW EXECUTE FUNCTION accrual_billing_queue_add();

CREATE FUNCTION accrual_billing_queue_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM billing_queue
     WHERE tenant_id = NEW.tenant_id AND billing_point_id = NEW.billing_point_id;
    RETURN NULL;
END $$;
CREATE TRIGGER billing_point_results_dequeue AFTER INSERT ON billing_point_results
    FOR EACH ROW EXECUTE FUNCTION accrual_billing_queue_remove();
"""

BACKFILL = """
INSERT INTO billing_queue (tenant_id, billing_point_id, at, test_clock_id, subscription_created_at,
                           subscription_id, history_seq)
SELECT p.tenant_id, p.billing_point_id, p.at, p.test_clock_id, s.created_at, p.subscription_id,
       p.history_seq
  FROM billing_points p
  JOIN subscriptions s ON s.tenant_id = p.tenant_id AND s.subscription_id = p.subscription_id
 WHERE NOT EXISTS (SELECT 1 FROM billing_point_results r
                    WHERE r.tenant_id = p.tenant_id AND r.billing_point_id = p.billing_point_id)
"""


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(TRIGGERS)
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER billing_point_results_dequeue ON billing_point_results")
    op.execute("DROP TRIGGER billing_points_enqueue ON billing_points")
    op.execute("DROP FUNCTION accrual_billing_queue_remove(); DROP FUNCTION accrual_billing_queue_add()")
    op.execute("DROP TABLE billing_queue")
