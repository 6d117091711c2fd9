"""Billing tests drive scenarios through the simulator: the same services as the API, on a test clock."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.domain import money
from accrual.services import ledger, simulation
from accrual.services.billing import due
from accrual.services.registry import default_registry
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database

ACTOR = Actor.cli("tests")


@dataclasses.dataclass(frozen=True)
class Played:
    db: Database
    tenant_id: uuid.UUID
    report: dict[str, Any]

    @property
    def invoices(self) -> list[dict[str, Any]]:
        return list(self.report["invoices"])

    def invoice_id(self, number: str) -> uuid.UUID:
        with self.db.connect() as conn:
            found: uuid.UUID = conn.execute(
                sa.text("select invoice_id from invoices where tenant_id = :t and number = :n"),
                {"t": self.tenant_id, "n": number},
            ).scalar_one()
        return found

    def rows(self, query: str, **params: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(sa.text(query), {"t": self.tenant_id, **params}))


def play(db: Database, scenario: dict[str, Any]) -> Played:
    parsed = simulation.parse_scenario(scenario)
    outcome = simulation.run_scenario(db, parsed, registry=default_registry(), actor=ACTOR)
    return Played(db, outcome.tenant_id, outcome.report)


MONTHLY_USD: dict[str, Any] = {
    "meters": [{"code": "calls", "aggregation": "count"}],
    "plans": [
        {
            "code": "pro",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"code": "base", "model": "flat", "amount": "50", "timing": "in_arrears"},
                {"code": "calls", "meter": "calls", "model": "per_unit", "amount": "1"},
            ],
        },
        {
            "code": "seat",
            "currency": "USD",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "31"}],
        },
    ],
}


@pytest.fixture
def scenario() -> dict[str, Any]:
    """A month of a $50 arrears fee plus $1 a call, on calendar billing, for one customer."""
    return {
        "name": "billing test",
        "start": "2026-01-01T00:00:00Z",
        "catalog": MONTHLY_USD,
        "customers": [{"id": "acme", "currency": "USD"}],
        "steps": [
            {
                "at": "2026-01-01T00:00:00Z",
                "subscribe": {"id": "s1", "customer": "acme", "plan": "pro", "billing": "calendar"},
            }
        ],
        "end": "2026-02-01T00:00:00Z",
    }


def spy_on_lanes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Runs billed in the lane processes from now on: how many batches each had."""
    pipelined: list[int] = []
    real = due._pipelined

    def spied(batches: Any, borrowed: Any) -> None:
        pipelined.append(len(batches))
        real(batches, borrowed)

    monkeypatch.setattr(due, "_pipelined", spied)
    return pipelined


_OWED = """
select currency, sum(amount_due - amount_paid - amount_credited) from invoices
 where tenant_id = :t and status = 'open' group by currency
"""
_WRITTEN_OFF = """
select currency, sum(amount_due - amount_paid - amount_credited) from invoices
 where tenant_id = :t and status = 'uncollectible' group by currency
"""
_CREDIT = "select currency, sum(amount) from customer_balance_entries where tenant_id = :t group by currency"
_CASH = """
select currency, sum(amount) from payments where tenant_id = :t and outcome = 'succeeded' group by currency
"""
_TAX = """
select i.currency,
       sum(i.tax) - coalesce(sum((select sum(n.tax) from credit_notes n
                                   where n.tenant_id = i.tenant_id and n.invoice_id = i.invoice_id)), 0)
  from invoices i where i.tenant_id = :t and i.number is not null and i.status <> 'void' group by i.currency
"""


def ledger_ties_out(db: Database, tenant_id: uuid.UUID) -> None:
    """The ledger agrees with the documents it was posted from: receivable with what open
    invoices still owe, bad debt with what written-off ones do, customer credit with the
    balances, cash with the payments, tax payable with the tax of unvoided invoices less their
    credit notes'."""
    found = ledger.trial_balance(db, tenant_id=tenant_id)
    assert ledger.is_balanced(found)
    with db.connect() as conn:
        expected = {
            account: {
                row[0]: int(row[1])
                for row in conn.execute(sa.text(query), {"t": tenant_id})
                if row[1] is not None and int(row[1]) != 0
            }
            for account, query in (
                ("accounts_receivable", _OWED),
                ("bad_debt", _WRITTEN_OFF),
                ("customer_credit", _CREDIT),
                ("cash", _CASH),
                ("tax_payable", _TAX),
            )
        }
    for account, by_currency in expected.items():
        posted = {
            code: money.to_minor_units(accounts[account], money.currency(code))
            for code, accounts in found.items()
            if accounts[account] != 0
        }
        assert posted == by_currency, account
