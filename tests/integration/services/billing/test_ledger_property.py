"""Whatever happens to invoices after they are billed, in any order, the ledger balances after
every step, agrees with the documents, and posts no fact twice."""

from __future__ import annotations

import contextlib
import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accrual.domain.errors import AccrualError
from accrual.services.billing import corrections, invoices
from accrual.store.database import Database
from tests.integration.services.billing.conftest import ACTOR, MONTHLY_USD, ledger_ties_out, play

NOW = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)

ACTIONS = ("pay", "overpay", "pay_part", "fail_payment", "credit_part", "credit_line", "void", "write_off")
steps = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.integers(0, 5), st.integers(1, 99)), min_size=1, max_size=8
)


def _billed(db: Database, tax: str, coupon: bool) -> Any:
    """Two customers (one taxed) with two subscriptions each over three months: open invoices
    of fees in advance and in arrears, usage, a coupon for a while."""
    catalog = MONTHLY_USD | {
        "taxes": [{"code": "T", "rate": tax}],
        "coupons": [
            {"code": "OFF", "kind": "percentage", "value": "25", "duration": "repeating", "periods": 2}
        ],
    }
    customers = [{"id": "a", "currency": "USD", "tax": "T"}, {"id": "b", "currency": "USD"}]
    subscribe = [
        {
            "subscribe": {"id": f"{c}-{plan}", "customer": c, "plan": plan, "billing": "calendar"}
            | ({"coupon": "OFF"} if coupon and plan == "seat" else {})
        }
        for c in ("a", "b")
        for plan in ("pro", "seat")
    ]
    usage = {
        "at": "2026-01-20T00:00:00Z",
        "events": [{"id": f"u{n}", "subscription": "a-pro", "meter": "calls"} for n in range(7)],
    }
    return play(
        db,
        {
            "name": "ledger property",
            "start": "2026-01-01T00:00:00Z",
            "catalog": catalog,
            "customers": customers,
            "steps": [{"at": "2026-01-01T00:00:00Z", **step} for step in subscribe] + [usage],
            "end": "2026-03-01T00:00:00Z",
        },
    )


def _act(db: Database, tenant_id: Any, row: Any, action: str, percent: int) -> None:
    remaining = Decimal(row.amount_due - row.amount_paid - row.amount_credited) / 100
    part = (remaining * percent / 100).quantize(Decimal("0.01"))
    if action in ("pay", "overpay", "pay_part", "fail_payment"):
        spec: dict[str, object] = {
            "pay": {},
            "overpay": {"amount": str(remaining + Decimal("5.00"))},
            "pay_part": {"amount": str(max(part, Decimal("0.01")))},
            "fail_payment": {"outcome": "failed", "amount": "1.00"},
        }[action]
        corrections.record_payment(
            db, tenant_id=tenant_id, invoice=row.invoice_id, spec=spec, actor=ACTOR, now=NOW
        )
    elif action == "credit_part":
        corrections.create_credit_note(
            db,
            tenant_id=tenant_id,
            invoice=row.invoice_id,
            spec={"amount": str(max(part, Decimal("0.01"))), "reason": "property"},
            actor=ACTOR,
            now=NOW,
        )
    elif action == "credit_line":
        corrections.create_credit_note(
            db,
            tenant_id=tenant_id,
            invoice=row.invoice_id,
            spec={"lines": [{"line_no": 1, "amount": "1.00"}], "reason": "property"},
            actor=ACTOR,
            now=NOW,
        )
    elif action == "void":
        invoices.void_invoice(db, tenant_id=tenant_id, invoice_id=row.invoice_id, actor=ACTOR, now=NOW)
    else:
        invoices.mark_uncollectible(db, tenant_id=tenant_id, invoice_id=row.invoice_id, actor=ACTOR, now=NOW)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tax=st.sampled_from(["0", "10", "19.6"]), coupon=st.booleans(), actions=steps)
def test_the_ledger_ties_out_after_every_step(
    db: Database, tax: str, coupon: bool, actions: list[tuple[str, int, int]]
) -> None:
    played = _billed(db, tax, coupon)
    ledger_ties_out(db, played.tenant_id)
    for action, which, percent in actions:
        rows = played.rows(
            "select * from invoices where tenant_id = :t and number is not null order by number"
        )
        row = rows[which % len(rows)]
        # Refused (not possible in the invoice's status, nothing left to credit): nothing posted.
        with contextlib.suppress(AccrualError):
            _act(db, played.tenant_id, row, action, percent)
        ledger_ties_out(db, played.tenant_id)
    # Each fact was posted once: one entry per kind and source, however often it was asked.
    with db.connect() as conn:
        counts = conn.execute(
            sa.text(
                "select kind, count(*), count(distinct source_id) from ledger_entries where tenant_id = :t "
                "group by kind"
            ),
            {"t": played.tenant_id},
        ).all()
    assert all(total == distinct for _, total, distinct in counts)
