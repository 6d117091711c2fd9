"""`accrual catalog apply` keeps pricing in git: idempotent, and errors name the file's line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import run_cli

ROOT = Path(__file__).resolve().parents[3]


run = run_cli


@pytest.fixture
def tenant(cli: CliRunner) -> str:
    tenant_id: str = json.loads(run(cli, "tenants", "create", "Catalog Co", "--json"))["tenant"]
    return tenant_id


def test_apply_a_scenario_file_twice(cli: CliRunner, tenant: str) -> None:
    path = ROOT / "scenarios" / "shared" / "volume_tiers.yaml"
    first = json.loads(run(cli, "catalog", "apply", str(path), "--tenant", tenant, "--json"))
    assert {(r["kind"], r["code"], r["outcome"]) for r in first} == {
        ("meter", "calls", "created"),
        ("plan", "vol", "created, version 1 published"),
    }
    output = run(cli, "catalog", "apply", str(path), "--tenant", tenant)
    assert "2 objects, 0 changed" in output
    shown = run(cli, "plans", "show", "vol", "--tenant", tenant)
    assert "unit_amount: '0.0006'" in shown


def test_errors_name_the_file_and_line(cli: CliRunner, tenant: str, tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        "catalog:\n"
        "  meters:\n"
        "    - {code: calls, aggregation: count}\n"
        "  plans:\n"
        "    - code: tiered\n"
        "      currency: USD\n"
        "      interval: month\n"
        "      charges:\n"
        "        - code: calls\n"
        "          meter: calls\n"
        "          model: graduated\n"
        "          tiers:\n"
        "            - {up_to: 100, unit_amount: 0.05}\n"
        "            - {up_to: 50, unit_amount: 0.04}\n"
        "            - {up_to: null, unit_amount: 0.03}\n"
    )
    output = run(cli, "catalog", "apply", str(path), "--tenant", tenant, code=1)
    assert output.startswith(f"error: {path}:14:")
    assert "/catalog/plans/0/charges/0/tiers/1/up_to" in output
    assert json.loads(run(cli, "meters", "list", "--tenant", tenant, "--json")) == []  # nothing written


def test_syntax_errors_and_duplicate_keys_name_the_line(cli: CliRunner, tenant: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("catalog:\n  meters:\n    - {code: calls, aggregation: count\n")
    assert run(cli, "catalog", "apply", str(broken), "--tenant", tenant, code=1).startswith(
        f"error: {broken}:"
    )
    doubled = tmp_path / "doubled.yaml"
    doubled.write_text("catalog:\n  meters: []\n  meters: []\n")
    output = run(cli, "catalog", "apply", str(doubled), "--tenant", tenant, code=1)
    assert "line 3" in output
    assert "appears twice" in output
    missing = tmp_path / "missing.yaml"
    assert "cannot be read" in run(cli, "catalog", "apply", str(missing), "--tenant", tenant, code=1)


def test_export_round_trips_through_apply(cli: CliRunner, tenant: str, tmp_path: Path) -> None:
    for name in ("invoice_waterfall.yaml", "percentage_free_events.yaml", "package_with_free_units.yaml"):
        run(cli, "catalog", "apply", str(ROOT / "scenarios" / "shared" / name), "--tenant", tenant)
    exported = tmp_path / "exported.yaml"
    exported.write_text(run(cli, "catalog", "export", "--tenant", tenant))
    output = run(cli, "catalog", "apply", str(exported), "--tenant", tenant)
    assert ", 0 changed" in output
    assert "TEN" in exported.read_text()


def test_publish_and_approve_from_the_cli(cli: CliRunner, tenant: str, tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "shared" / "calendar_proration.yaml"
    run(cli, "catalog", "apply", str(path), "--tenant", tenant)
    assert "basic" in run(cli, "plans", "list", "--tenant", tenant)
    output = run(cli, "plans", "approve", "basic", "1", "--tenant", tenant, code=1)
    assert "not awaiting approval" in output
    assert "archived" in run(cli, "plans", "archive", "basic", "--tenant", tenant)
