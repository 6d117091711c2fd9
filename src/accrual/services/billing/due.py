"""Billing as due work: billing points become invoices, drafts finalize when their grace ends.

Both follow the clock (real or test) like every other due work. A billing run is the set of
billing points due as of an instant, taken in numbering order (instant, then subscription
creation); the points of one tenant and instant are billed together, set-based, in one
transaction (`run.bill_points`), each leaving a result row, so a run that crashes resumes at
the first point without one, and two runs racing bill each point once (the second waits on
the subscriptions' locks, then finds the results).

A run of several batches pipelines them in two lane processes (`lanes`): while one batch
writes and numbers its invoices, the next one reads and composes, and numbers after it
(`run.Turn`), so the numbers still follow the run's order.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
import structlog

from accrual.domain.errors import AccrualError
from accrual.services.billing import faults, invoices, lanes, run
from accrual.services.due_work import ClockScope
from accrual.services.unit_of_work import read_only
from accrual.store import invoices as store
from accrual.store.database import Database, TransactionSource

BATCH = 1000
# Batches a run takes at most, and how many it has in flight at once.
BATCHES_PER_RUN = 10
LANES = 2
# Below this many batches' worth of points a run bills them itself: starting its lanes would
# cost more than it saves.
PIPELINE_FROM = 2
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
                conn,
                tenant_id=scope.tenant_id,
                test_clock_id=scope.test_clock_id,
                at=at,
                limit=BATCH * BATCHES_PER_RUN,
            )
        batches = _batches(points)
        if len(points) >= PIPELINE_FROM * BATCH and len(batches) > 1 and isinstance(db, Database):
            with lanes.borrowed(db, LANES) as borrowed:
                if borrowed is not None:
                    _pipelined(batches, borrowed)
                    return len(points)
        # Little to bill, one connection (a caller's transaction), or the lanes are busy.
        for batch in batches:
            bill_batch(db, batch, None)
        return len(points)


def bill_batch(db: TransactionSource, batch: lanes.Batch, turn: run.Turn | None) -> None:
    """Bill a batch of one tenant's points due at one instant in one transaction; when that
    fails, point by point, setting aside the points that fail. `turn`: its place in a
    pipelined run."""
    tenant_id, instant, point_ids = batch
    try:
        if turn is not None:
            turn.wait_to_start()
        run.bill_points(db, tenant_id=tenant_id, point_ids=point_ids, at=instant, turn=turn)
    except Exception:
        # One subscription's bad data must not stop everyone's billing. The batch's locks are
        # gone with its transaction: the next batch goes on meanwhile.
        if turn is not None:
            turn.end()
        for point_id in point_ids:
            try:
                run.bill_points(db, tenant_id=tenant_id, point_ids=[point_id], at=instant)
            except Exception as error:
                _set_aside(db, tenant_id=tenant_id, billing_point_id=point_id, error=error, at=instant)
    finally:
        if turn is not None:
            turn.end()
    faults.reach("committed")


def _pipelined(batches: Sequence[lanes.Batch], borrowed: Sequence[lanes.Lane]) -> None:
    """Bill `batches` in order in the lanes, as many at once as there are lanes: each starts
    once the one before holds its locks and numbers once it has ended (`run.Turn`). After a
    failure no further batch starts; the first failure is raised when the others have ended."""
    turns: list[run.Turn] = []
    for _ in batches:
        turns.append(run.Turn(after=turns[-1] if turns else None))
    free: queue.SimpleQueue[lanes.Lane] = queue.SimpleQueue()
    for lane in borrowed:
        free.put(lane)
    stopped = threading.Event()

    def bill(batch: lanes.Batch, turn: run.Turn) -> None:
        try:
            turn.wait_to_start()
            lane = free.get()
            try:
                if not stopped.is_set():
                    lane.bill(batch, turn)
            except BaseException:
                stopped.set()
                raise
            finally:
                free.put(lane)
        finally:
            turn.end()

    with ThreadPoolExecutor(max_workers=len(borrowed), thread_name_prefix="billing") as threads:
        done = [threads.submit(bill, batch, turn) for batch, turn in zip(batches, turns, strict=True)]
    for future in done:
        future.result()


def _batches(points: Sequence[Any]) -> list[lanes.Batch]:
    """Points (in numbering order) as batches of one tenant and instant, of about `BATCH`
    points each; a subscription's points of one instant stay in one batch."""
    batches: list[lanes.Batch] = []
    last_subscription = None
    for point in points:
        same_instant = batches and batches[-1][:2] == (point.tenant_id, point.at)
        full = same_instant and len(batches[-1][2]) >= BATCH and point.subscription_id != last_subscription
        if same_instant and not full:
            batches[-1][2].append(point.billing_point_id)
        else:
            batches.append((point.tenant_id, point.at, [point.billing_point_id]))
        last_subscription = point.subscription_id
    return batches


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
