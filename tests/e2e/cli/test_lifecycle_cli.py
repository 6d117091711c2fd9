"""Customers and subscriptions from the command line, on a test clock."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.support import run_cli as run

ROOT = Path(__file__).resolve().parents[3]


def test_subscribe_advance_and_read_back(cli: CliRunner) -> None:
    tenant = json.loads(run(cli, "tenants", "create", "Lifecycle Co", "--json"))["tenant"]
    run(
        cli,
        "catalog",
        "apply",
        str(ROOT / "scenarios" / "shared" / "calendar_proration.yaml"),
        "--tenant",
        tenant,
    )
    clock = json.loads(
        run(cli, "clock", "create", "--tenant", tenant, "--at", "2026-08-10T00:00:00Z", "--json")
    )["id"]
    run(cli, "customers", "create", "acme", "--currency", "USD", "--test-clock", clock, "--tenant", tenant)
    created = json.loads(
        run(
            cli,
            "subscriptions",
            "create",
            "--tenant",
            tenant,
            "--customer",
            "acme",
            "--plan",
            "basic",
            "--billing",
            "calendar",
            "--external-id",
            "sub_1",
            "--json",
        )
    )
    assert created["status"] == "active"
    assert created["current_period"]["end"] == "2026-09-01T00:00:00+00:00"
    run(cli, "clock", "advance", "--tenant", tenant, clock, "--to", "2026-10-15T00:00:00Z")
    shown = json.loads(run(cli, "subscriptions", "show", "sub_1", "--tenant", tenant, "--json"))
    assert shown["current_period"]["start"] == "2026-10-01T00:00:00+00:00"
    timeline = json.loads(run(cli, "subscriptions", "timeline", "sub_1", "--tenant", tenant, "--json"))
    assert [e["action"] for e in timeline] == ["create", "renew", "renew"]
    canceled = run(cli, "subscriptions", "cancel", "sub_1", "--tenant", tenant)
    assert "canceled" in canceled
    assert "active" in run(cli, "subscriptions", "uncancel", "sub_1", "--tenant", tenant)
    output = run(cli, "subscriptions", "change", "sub_1", "--quantity", "0", "--tenant", tenant, code=1)
    assert "quantity" in output
    assert "sub_1" in run(cli, "subscriptions", "list", "--tenant", tenant)
    assert "acme" in run(cli, "customers", "list", "--tenant", tenant)
    run(cli, "customers", "update", "acme", "--set", '{"email": "ap@acme.test"}', "--tenant", tenant)
    assert (
        json.loads(run(cli, "customers", "show", "acme", "--tenant", tenant, "--json"))["email"]
        == "ap@acme.test"
    )
    updated = run(
        cli,
        "subscriptions",
        "update",
        "sub_1",
        "--set",
        '{"metadata": {"crm": "42"}}',
        "--tenant",
        tenant,
        "--json",
    )
    assert json.loads(updated)["metadata"] == {"crm": "42"}
    assert "--set: not JSON" in run(
        cli, "customers", "update", "acme", "--set", "{", "--tenant", tenant, code=1
    )
