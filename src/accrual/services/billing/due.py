"""Billing as due work: billing points become invoices, drafts finalize when their grace ends.

Both follow the clock (real or test) like every other due work. A billing run is the set of
billing points due as of an instant, taken in numbering order (instant, then subscription
creation); each point is billed in a transaction of its own and leaves a result row, so a
run that crashes resumes at the first point without one, and two runs racing bill each
point once (the second waits on the subscription's lock, then finds the result).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
import structlog

from accrual.domain.errors import AccrualError
from accrual.services.billing import faults, invoices
from accrual.services.due_work import ClockScope
from accrual.services.unit_of_work import read_only
from accrual.store import invoices as store
from accrual.store.database import TransactionSource

BATCH = 500
LOG = structlog.get_logger("accrual.billing")


class BillingPointsDue:
    """Due-work provider: invoices for billing points the lifecycle wrote."""

    name = "billing"

    def next_due(self, conn: sa.Connection, *, scope: ClockScope, until: dt.datetime) -> dt.datetime | None:
        return store.earliest_unbilled_point(
            conn, tenant_id=scope.tenant_id, test_clock_id=scope.test_clock_id, until=until
        )

    def run_due(self, db: TransactionSource, *, scope: ClockScope, at: dt.datetime) -> int:
        with read_only(db) as conn:
            points = store.unbilled_points(
                conn, tenant_id=scope.tenant_id, test_clock_id=scope.test_clock_id, at=at, limit=BATCH
            )
        for point in points:
            try:
                invoices.bill_point(
                    db, tenant_id=point.tenant_id, billing_point_id=point.billing_point_id, now=at
                )
            except AccrualError as error:
                # One subscription's bad data must not stop everyone's billing: set it aside,
                # said loudly, for an operator to fix and retry (`accrual bill --retry-failed`).
                LOG.error(
                    "billing_point_failed", billing_point=str(point.billing_point_id), error=error.detail
                )
                with db.transaction() as conn:
                    store.record_failure(
                        conn,
                        tenant_id=point.tenant_id,
                        billing_point_id=point.billing_point_id,
                        error=f"{type(error).__name__}: {error.detail}",
                        at=at,
                    )
            faults.reach("committed")
        return len(points)


class DraftsDue:
    """Due-work provider: drafts whose grace period has ended are finalized."""

    name = "invoice_finalization"

    def next_due(self, conn: sa.Connection, *, scope: ClockScope, until: dt.datetime) -> dt.datetime | None:
        return store.earliest_draft_due(
            conn, tenant_id=scope.tenant_id, test_clock_id=scope.test_clock_id, until=until
        )

    def run_due(self, db: TransactionSource, *, scope: ClockScope, at: dt.datetime) -> int:
        with read_only(db) as conn:
            due = store.drafts_due(
                conn, tenant_id=scope.tenant_id, test_clock_id=scope.test_clock_id, at=at, limit=BATCH
            )
        for tenant_id, invoice_id in due:
            invoices.finalize_draft(
                db, tenant_id=tenant_id, invoice_id=invoice_id, actor=invoices.BILLING, now=at
            )
        return len(due)


def list_failures(db: TransactionSource, *, tenant_id: uuid.UUID | None = None) -> list[sa.Row[Any]]:
    """Billing points set aside because their invoice could not be composed, with the reason."""
    with read_only(db) as conn:
        return store.failures(conn, tenant_id=tenant_id)


def retry_failures(db: TransactionSource, *, tenant_id: uuid.UUID | None = None) -> int:
    """Put set-aside billing points back in the run (after their cause was fixed); return how many."""
    with db.transaction() as conn:
        return store.clear_failures(conn, tenant_id=tenant_id)
