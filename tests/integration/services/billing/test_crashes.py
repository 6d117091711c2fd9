"""A billing run killed at any point, then run again, bills exactly what an uninterrupted run bills."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.services.billing import faults
from accrual.services.billing.views import views_of
from accrual.store.database import Database
from tests.integration.services.billing.conftest import Played, play

BOUNDARY = "2026-02-01T00:00:00Z"

# The child runs the same due work the worker runs, on the scenario's test clock.
CHILD = """
import datetime as dt, sys, uuid
from accrual.services import test_clocks
from accrual.services.registry import default_registry
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database

db = Database(sys.argv[1])
test_clocks.advance_test_clock(
    db, tenant_id=uuid.UUID(sys.argv[2]), test_clock_id=uuid.UUID(sys.argv[3]),
    to=dt.datetime.fromisoformat(sys.argv[4]), registry=default_registry(), actor=Actor.cli("crash"),
    now=dt.datetime.fromisoformat(sys.argv[4]),
)
"""


def _scenario(end: str) -> dict[str, Any]:
    return {
        "name": "crash",
        "start": "2026-01-01T00:00:00Z",
        "catalog": {
            "meters": [{"code": "calls", "aggregation": "count"}],
            "plans": [
                {
                    "code": "pro",
                    "currency": "EUR",
                    "interval": "month",
                    "charges": [
                        {"code": "base", "model": "flat", "amount": "50", "timing": "in_arrears"},
                        {"code": "calls", "meter": "calls", "model": "per_unit", "amount": "0.10"},
                        {"code": "support", "model": "flat", "amount": "9.99"},
                    ],
                }
            ],
            "coupons": [{"code": "TEN", "kind": "percentage", "value": "10", "duration": "forever"}],
            "taxes": [{"code": "VAT19", "rate": "19"}],
        },
        "customers": [{"id": f"c{i}", "currency": "EUR", "tax": "VAT19"} for i in range(4)],
        "steps": [
            *(
                {
                    "at": "2026-01-01T00:00:00Z",
                    "subscribe": {"id": f"s{i}", "customer": f"c{i}", "plan": "pro", "billing": "calendar"}
                    | ({"coupon": "TEN"} if i % 2 else {}),
                }
                for i in range(4)
            ),
            {
                "at": "2026-01-15T00:00:00Z",
                "events": [
                    {"id": f"e{i}", "repeat": 7 * (i + 1), "subscription": f"s{i}", "meter": "calls"}
                    for i in range(4)
                ],
            },
        ],
        "end": end,
    }


def _invoices(played: Played) -> list[dict[str, Any]]:
    with played.db.connect() as conn:
        rows = conn.execute(
            sa.text("select * from invoices where tenant_id = :t order by number nulls last, created_at"),
            {"t": played.tenant_id},
        ).all()
        views = views_of(conn, rows)
    found = []
    for view in views:
        snapshot = view.snapshot()
        snapshot.pop("id")
        found.append(snapshot)
    return found


def _clock(played: Played) -> uuid.UUID:
    (row,) = played.rows("select test_clock_id from test_clocks where tenant_id = :t")
    clock_id: uuid.UUID = row.test_clock_id
    return clock_id


def _advance(database_url: str, played: Played, *, crash_at: str | None) -> int:
    env = dict(os.environ)
    env.pop("ACCRUAL_CRASH_AT", None)
    if crash_at is not None:
        env["ACCRUAL_CRASH_AT"] = crash_at
    done = subprocess.run(
        [sys.executable, "-c", CHILD, database_url, str(played.tenant_id), str(_clock(played)), BOUNDARY],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, faults.CRASH_EXIT_CODE), done.stderr
    return done.returncode


@pytest.mark.parametrize("point", faults.POINTS)
def test_a_run_killed_at_each_point_resumes_to_the_same_invoices(
    db: Database, database_url: str, point: str
) -> None:
    uninterrupted = _invoices(play(db, _scenario(end=BOUNDARY)))
    assert len(uninterrupted) == 8  # January's first advance fees, then four boundary invoices
    crashed = play(db, _scenario(end="2026-01-31T00:00:00Z"))
    assert _advance(database_url, crashed, crash_at=point) == faults.CRASH_EXIT_CODE
    assert _advance(database_url, crashed, crash_at=None) == 0
    assert _invoices(crashed) == uninterrupted
    numbers = [i["number"] for i in _invoices(crashed)]
    assert numbers == [f"ACC-{n:06d}" for n in range(1, 9)]
