"""Billing as due work: billing points become invoices, drafts finalize when their grace ends.

Both follow the clock (real or test) like every other due work. A billing run is the set of
billing points due as of an instant, taken in numbering order (instant, then subscription
creation); the points of one tenant and instant are billed together, set-based, in one
transaction (`run.bill_points`), each leaving a result row, so a run that crashes resumes at
the first point without one, and two runs racing bill each point once (the second waits on
the subscriptions' locks, then finds the results).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
import structlog

from accrual.domain.errors import AccrualError
from accrual.services.billing import faults, invoices, run
from accrual.services.due_work import ClockScope
from accrual.services.unit_of_work import read_only
from accrual.store import invoices as store
from accrual.store.database import TransactionSource

BATCH = 1000
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
        # One transaction per tenant and instant, in numbering order.
        batches: list[tuple[uuid.UUID, dt.datetime, list[uuid.UUID]]] = []
        for point in points:
            if batches and batches[-1][:2] == (point.tenant_id, point.at):
                batches[-1][2].append(point.billing_point_id)
            else:
                batches.append((point.tenant_id, point.at, [point.billing_point_id]))
        for tenant_id, instant, point_ids in batches:
            try:
                run.bill_points(db, tenant_id=tenant_id, point_ids=point_ids, at=instant)
            except Exception:
                # One subscription's bad data must not stop everyone's billing: bill the batch
                # point by point, setting aside the ones that fail.
                self._one_by_one(db, tenant_id=tenant_id, point_ids=point_ids, at=instant)
            faults.reach("committed")
        return len(points)

    @staticmethod
    def _one_by_one(
        db: TransactionSource, *, tenant_id: uuid.UUID, point_ids: list[uuid.UUID], at: dt.datetime
    ) -> None:
        for point_id in point_ids:
            try:
                run.bill_points(db, tenant_id=tenant_id, point_ids=[point_id], at=at)
            except Exception as error:
                _set_aside(db, tenant_id=tenant_id, billing_point_id=point_id, error=error, at=at)


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
        for tenant_id, invoice_id, point_id in due:
            try:
                invoices.finalize_draft(
                    db, tenant_id=tenant_id, invoice_id=invoice_id, actor=invoices.BILLING, now=at
                )
            except Exception as error:
                if point_id is None:
                    raise
                _set_aside(db, tenant_id=tenant_id, billing_point_id=point_id, error=error, at=at)
        return len(due)


def _set_aside(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    billing_point_id: uuid.UUID,
    error: Exception,
    at: dt.datetime,
) -> None:
    """One subscription's bad data must not stop everyone's billing: its billing point (or its
    draft) is set aside, said loudly, for an operator to fix and retry (`accrual bill
    --retry-failed`)."""
    detail = error.detail if isinstance(error, AccrualError) else str(error)
    LOG.error("billing_point_failed", billing_point=str(billing_point_id), error=detail)
    with db.transaction() as conn:
        store.record_failure(
            conn,
            tenant_id=tenant_id,
            billing_point_id=billing_point_id,
            error=f"{type(error).__name__}: {detail}",
            at=at,
        )


def list_failures(db: TransactionSource, *, tenant_id: uuid.UUID | None = None) -> list[sa.Row[Any]]:
    """Billing points set aside because their invoice could not be composed, with the reason."""
    with read_only(db) as conn:
        return store.failures(conn, tenant_id=tenant_id)


def retry_failures(db: TransactionSource, *, tenant_id: uuid.UUID | None = None) -> int:
    """Put set-aside billing points back in the run (after their cause was fixed); return how many."""
    with db.transaction() as conn:
        return store.clear_failures(conn, tenant_id=tenant_id)
