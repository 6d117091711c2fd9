"""The worker's usage chores: fold events into rollups, retry quarantine, create partitions ahead."""

from __future__ import annotations

import datetime as dt

from prometheus_client import Counter, Gauge

from accrual.services.usage import quarantine
from accrual.store import usage as store
from accrual.store import usage_rollups
from accrual.store.database import Database

ROLLUP_ROWS = Counter("accrual_usage_rollup_rows_total", "Rollup rows written by rollup passes.")
ROLLUP_LAG = Gauge("accrual_usage_rollup_xact_span", "Transaction ids folded by the last rollup pass.")
RELEASED = Counter("accrual_usage_quarantine_released_total", "Quarantined events counted after all.")


def roll_up(db: Database, *, now: dt.datetime) -> int:
    """One rollup pass; returns how many rollup rows it wrote."""
    with db.transaction() as conn:
        low, high, touched = usage_rollups.roll_up(conn, now=now)
    with db.transaction() as conn:
        usage_rollups.summarize_new_pages(conn)
    ROLLUP_ROWS.inc(touched)
    ROLLUP_LAG.set(high - low)
    return touched


def release_and_prepare(db: Database, *, now: dt.datetime) -> int:
    """Retry every quarantined event; make sure this month's and the next two months' partitions exist."""
    month = store.month_start(now)
    store.ensure_partitions(db, [month, month + dt.timedelta(days=32), month + dt.timedelta(days=63)])
    released = quarantine.reprocess(db, tenant_id=None, now=now)
    RELEASED.inc(released)
    return released
