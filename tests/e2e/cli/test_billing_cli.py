"""`accrual simulate` and `accrual invoices` as an operator runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from accrual.store.database import Database
from tests.integration.services.billing.conftest import MONTHLY_USD, play
from tests.support import run_cli

SHARED = Path(__file__).resolve().parents[3] / "scenarios" / "shared"


def _simulation_databases(db: Database) -> int:
    """Throw-away databases of this process (the CLI runs in it; other workers make their own)."""
    with db.connect() as conn:
        return int(
            conn.execute(
                sa.text("select count(*) from pg_database where datname like :p"),
                {"p": f"accrual_simulate_{os.getpid()}_%"},
            ).scalar_one()
        )


def test_simulate_prints_the_invoices_and_leaves_no_database(cli: CliRunner, db: Database) -> None:
    before = _simulation_databases(db)
    output = run_cli(cli, "simulate", str(SHARED / "upgrade_in_arrears.yaml"))
    assert "ACC-000001" in output
    assert "45.16" in output
    assert "109.68" in output
    assert _simulation_databases(db) == before


def test_simulate_json_and_check(cli: CliRunner) -> None:
    output = run_cli(cli, "simulate", str(SHARED / "per_unit_api_calls.yaml"), "--json", "--check")
    assert "matches expect" in output
    report = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert report["events"] == {"accepted": 1000, "duplicates": 0, "rejected": []}
    assert [(i["number"], i["total"]) for i in report["invoices"]] == [("ACC-000001", "50.00")]


def test_check_names_the_line_of_each_difference(cli: CliRunner, tmp_path: Path) -> None:
    text = (SHARED / "volume_tiers.yaml").read_text().replace('total: "49.00"', 'total: "48.00"')
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if '"48.00"' in row)
    output = run_cli(cli, "simulate", str(wrong), "--check", code=1)
    assert f'{wrong}:{line}: /invoices/0/total: expected "48.00", got "49.00"' in output


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (
            {
                "steps": [
                    {
                        "at": "2026-01-01T00:00:00Z",
                        "subscribe": {"id": "s", "customer": "nobody", "plan": "pro"},
                    }
                ]
            },
            "no customer 'nobody'",
        ),
        ({"surprise": 1}, "surprise"),
        ({"steps": [{"at": "2026-01-01T00:00:00Z", "pay": {"invoice": "#1", "tip": 1}}]}, "tip"),
    ],
)
def test_a_broken_file_is_refused_with_its_line(
    cli: CliRunner, tmp_path: Path, mutation: dict[str, Any], message: str
) -> None:
    scenario = {
        "name": "broken",
        "start": "2026-01-01T00:00:00Z",
        "catalog": {
            "plans": [
                {
                    "code": "pro",
                    "currency": "USD",
                    "interval": "month",
                    "charges": [{"code": "b", "model": "flat", "amount": "1"}],
                }
            ]
        },
        "customers": [{"id": "acme", "currency": "USD"}],
    } | mutation
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    output = run_cli(cli, "simulate", str(path), code=1)
    assert f"{path}:" in output
    assert message in output


def test_invoices_commands(cli: CliRunner, db: Database, tmp_path: Path) -> None:
    played = play(
        db,
        {
            "name": "cli",
            "start": "2026-01-01T00:00:00Z",
            "catalog": MONTHLY_USD,
            "customers": [{"id": "acme", "currency": "USD"}],
            "steps": [{"subscribe": {"id": "s1", "customer": "acme", "plan": "pro", "billing": "calendar"}}],
            "end": "2026-02-01T00:00:00Z",
        },
    )
    tenant = str(played.tenant_id)
    listed = json.loads(run_cli(cli, "invoices", "list", "--tenant", tenant, "--json"))
    assert [(i["number"], i["status"], i["total"]) for i in listed] == [("ACC-000001", "open", "50.00")]
    assert "ACC-000001" in run_cli(cli, "invoices", "show", "--tenant", tenant, "ACC-000001")
    paid = json.loads(
        run_cli(cli, "invoices", "pay", "--tenant", tenant, "ACC-000001", "--amount", "60", "--json")
    )
    assert (paid["to_invoice"], paid["to_balance"]) == ("50.00", "10.00")
    pdf = tmp_path / "invoice.pdf"
    run_cli(cli, "invoices", "pdf", "--tenant", tenant, "ACC-000001", "-o", str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF")
    output = run_cli(cli, "invoices", "void", "--tenant", tenant, "ACC-000001", code=1)
    assert "paid" in output
    trial = json.loads(run_cli(cli, "ledger", "trial-balance", "--tenant", tenant, "--json"))
    assert trial["balanced"] is True
    usd = trial["currencies"]["USD"]
    assert (usd["cash"], usd["customer_credit"], usd["deferred_revenue"]) == ("60.00", "10.00", "50.00")
    assert "balanced" in run_cli(cli, "ledger", "trial-balance", "--tenant", tenant)
    before = json.loads(
        run_cli(
            cli, "ledger", "trial-balance", "--tenant", tenant, "--as-of", "2025-01-01T00:00:00Z", "--json"
        )
    )
    assert before["currencies"] == {}
    naive = run_cli(cli, "ledger", "trial-balance", "--tenant", tenant, "--as-of", "2026-01-01", code=1)
    assert "--as-of" in naive
    invoice_id = str(played.invoice_id("ACC-000001"))
    entries = json.loads(run_cli(cli, "ledger", "entries", "--tenant", tenant, invoice_id, "--json"))
    assert [e["kind"] for e in entries] == ["invoice_finalized", "payment"]
    assert "accounts_receivable" in run_cli(cli, "ledger", "entries", "--tenant", tenant, invoice_id)
    # Paid in full: nothing receivable, at any age.
    aging = json.loads(
        run_cli(cli, "ledger", "ar-aging", "--tenant", tenant, "--as-of", "2026-03-01T00:00:00Z", "--json")
    )
    assert (aging["customers"], aging["totals"]) == ([], {})
    csv_file = tmp_path / "aging.csv"
    run_cli(cli, "ledger", "ar-aging", "--tenant", tenant, "--csv", str(csv_file))
    assert csv_file.read_text().splitlines() == ["currency,customer,current,1_30,31_60,61_90,over_90,total"]
    assert "receivable aging" in run_cli(cli, "ledger", "ar-aging", "--tenant", tenant)
    assert "2025-12 closed" in run_cli(cli, "ledger", "close-period", "--tenant", tenant, "2025-12")
    assert "already closed" in run_cli(cli, "ledger", "close-period", "--tenant", tenant, "2025-12", code=1)
    reopened = json.loads(
        run_cli(cli, "ledger", "reopen-period", "--tenant", tenant, "2025-12", "--reason", "typo", "--json")
    )
    assert (reopened["status"], reopened["reason"]) == ("open", "typo")
    periods = json.loads(run_cli(cli, "ledger", "periods", "--tenant", tenant, "--json"))
    assert [p["month"] for p in periods] == ["2025-12"]


def test_bill_refuses_a_future_instant(cli: CliRunner) -> None:
    output = run_cli(cli, "bill", "--as-of", "2999-01-01T00:00:00Z", code=1)
    assert "in the future" in output
