"""`accrual webhooks ...` and `accrual relay --once` as an operator runs them."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from accrual.services import customers, tenants
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database
from tests.conftest import NOW
from tests.support import run_cli
from tests.webhook_support import Receiver


def test_an_operator_registers_an_endpoint_and_relays_to_it(
    cli: CliRunner, db: Database, tenant: CreatedTenant, receiver: Receiver
) -> None:
    tid = str(tenant.tenant.tenant_id)
    refused = run_cli(cli, "webhooks", "create", "--tenant", tid, receiver.url, code=1)
    assert "/url" in refused
    assert "https" in refused
    tenants.update_tenant(
        db,
        tenant_id=tenant.tenant.tenant_id,
        webhooks={"allow_insecure": True},
        actor=Actor.system("t"),
        now=NOW,
    )
    created = json.loads(
        run_cli(
            cli, "webhooks", "create", "--tenant", tid, receiver.url, "--event-type", "customer.*", "--json"
        )
    )
    assert created["secret"].startswith("whsec_")
    endpoint = created["id"]
    listed = json.loads(run_cli(cli, "webhooks", "list", "--tenant", tid, "--json"))
    assert [e["id"] for e in listed] == [endpoint]

    customers.create_customer(
        db,
        tenant_id=tenant.tenant.tenant_id,
        spec={"external_id": "acme", "currency": "USD"},
        test_clock_id=None,
        actor=Actor.system("t"),
        now=NOW,
    )
    assert "delivery attempts" in run_cli(cli, "relay", "--once")
    (request,) = receiver.received
    assert request.verify(created["secret"])["data"]["external_id"] == "acme"

    deliveries = json.loads(run_cli(cli, "webhooks", "deliveries", "--tenant", tid, endpoint, "--json"))
    assert [(d["event_type"], d["status"]) for d in deliveries] == [("customer.created", "succeeded")]
    assert "1 deliveries queued" in run_cli(cli, "webhooks", "redeliver", "--tenant", tid, request.id)
    assert "secret whsec_" in run_cli(cli, "webhooks", "rotate-secret", "--tenant", tid, endpoint)
    assert "disabled" in run_cli(cli, "webhooks", "disable", "--tenant", tid, endpoint)
    replay = run_cli(
        cli, "webhooks", "replay", "--tenant", tid, endpoint, "--since", "2000-01-01T00:00:00Z", code=1
    )
    assert "disabled" in replay
