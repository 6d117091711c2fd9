"""The CLI as an operator uses it: JSON for scripts, one-line errors, never a traceback."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from accrual.store.database import Database
from tests.support import run_cli

run = run_cli


def create_tenant(cli: CliRunner, name: str = "CLI Co") -> dict[str, str]:
    created: dict[str, str] = json.loads(
        run(cli, "tenants", "create", name, "--timezone", "Europe/Paris", "--json")
    )
    return created


def test_tenants_create_json_bootstraps_a_script(cli: CliRunner, live_server: str) -> None:
    import httpx2 as httpx

    created = create_tenant(cli)
    assert set(created) == {"tenant", "api_key"}
    response = httpx.get(
        f"{live_server}/v1/tenant", headers={"Authorization": f"Bearer {created['api_key']}"}
    )
    assert response.json()["id"] == created["tenant"]
    assert response.json()["timezone"] == "Europe/Paris"
    listed = json.loads(run(cli, "tenants", "list", "--json"))
    assert created["tenant"] in {t["id"] for t in listed}
    assert "CLI Co" in run(cli, "tenants", "list")


def test_api_keys_create_list_revoke(cli: CliRunner) -> None:
    tenant = create_tenant(cli)["tenant"]
    key = json.loads(
        run(cli, "api-keys", "create", "--tenant", tenant, "--name", "ingest", "--scope", "ingest", "--json")
    )
    assert key["api_key"].startswith("acr_")
    assert key["scopes"] == ["ingest"]
    listed = json.loads(run(cli, "api-keys", "list", "--tenant", tenant, "--json"))
    assert {k["id"] for k in listed} >= {key["id"]}
    assert "revoked" in run(cli, "api-keys", "revoke", "--tenant", tenant, key["id"])
    active = {k["id"] for k in json.loads(run(cli, "api-keys", "list", "--tenant", tenant, "--json"))}
    assert key["id"] not in active
    everything = json.loads(run(cli, "api-keys", "list", "--tenant", tenant, "--all", "--json"))
    assert key["id"] in {k["id"] for k in everything}


def test_clock_create_and_advance(cli: CliRunner) -> None:
    tenant = create_tenant(cli)["tenant"]
    clock = json.loads(
        run(cli, "clock", "create", "--tenant", tenant, "--at", "2026-01-31T00:00:00Z", "--json")
    )
    advanced = json.loads(
        run(
            cli,
            "clock",
            "advance",
            "--tenant",
            tenant,
            clock["id"],
            "--to",
            "2026-02-28T00:00:00+01:00",
            "--json",
        )
    )
    assert advanced["frozen_time"] == "2026-02-27T23:00:00Z"
    assert advanced["steps"] == []
    assert clock["id"] in run(cli, "clock", "list", "--tenant", tenant)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["api-keys", "create", "--tenant", "nope", "--name", "x", "--scope", "read"],
            "--tenant: 'nope' is not an id",
        ),
        (
            ["api-keys", "create", "--tenant", str(uuid.uuid4()), "--name", "x", "--scope", "read"],
            "no tenant",
        ),
        (
            ["clock", "create", "--tenant", str(uuid.uuid4()), "--at", "2026-01-01T00:00:00"],
            "has no UTC offset",
        ),
        (
            ["clock", "create", "--tenant", str(uuid.uuid4()), "--at", "yesterday"],
            "is not an RFC 3339 instant",
        ),
        (["tenants", "create", "X", "--timezone", "Moon/Base"], "'Moon/Base' is not an IANA time zone"),
    ],
)
def test_errors_are_one_clear_line(cli: CliRunner, args: list[str], message: str) -> None:
    output = run(cli, *args, code=1)
    assert message in output
    assert output.startswith("error:")


def test_bad_scope_names_the_scope(cli: CliRunner) -> None:
    tenant = create_tenant(cli)["tenant"]
    output = run(cli, "api-keys", "create", "--tenant", tenant, "--name", "x", "--scope", "root", code=1)
    assert "unknown scope 'root'" in output


def test_unreachable_database_is_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCRUAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    output = run(CliRunner(), "tenants", "list", code=3)
    assert output.startswith("error: cannot reach the database")


def test_audit_verify_names_the_tampered_row(cli: CliRunner, db: Database) -> None:
    tenant = create_tenant(cli, "Audited")["tenant"]
    assert "chain intact" in run(cli, "audit", "verify", "--tenant", tenant)
    with db.transaction() as conn:
        # A superuser with triggers disabled: the one way past the append-only triggers.
        conn.execute(sa.text("set local session_replication_role = replica"))
        conn.execute(
            sa.text("update audit_log set actor = 'cli:mallory' where tenant_id = :t and seq = 2"),
            {"t": tenant},
        )
    output = run(cli, "audit", "verify", "--tenant", tenant, code=1)
    assert f"tenant {tenant}: chain broken at seq 2" in output
    report = json.loads(run(cli, "audit", "verify", "--tenant", tenant, "--json", code=1))
    assert report == [
        {
            "tenant": tenant,
            "records_checked": 2,
            "intact": False,
            "first_broken_seq": 2,
            "reason": "hash does not match the record's contents",
        }
    ]


def test_migrate_reports_up_to_date(cli: CliRunner) -> None:
    assert "up to date" in run(cli, "migrate")


def test_help_lists_the_commands(cli: CliRunner) -> None:
    output = run(cli, "--help")
    for command in ("serve", "migrate", "tenants", "api-keys", "audit", "clock"):
        assert command in output
