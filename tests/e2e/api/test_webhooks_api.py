"""Webhook endpoints, deliveries, redelivery, replay and the outbox feed over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.integrations.webhook_transport import HttpTransport
from accrual.services.relay import Relay
from accrual.services.tenants import CreatedTenant
from accrual.store.database import Database
from tests.support import assert_problem, auth
from tests.webhook_support import Receiver


@pytest.fixture
def relay(db: Database) -> Iterator[Relay]:
    transport = HttpTransport()
    instance = Relay(db, clock=SYSTEM_CLOCK, transport=transport)
    yield instance
    instance.close()
    transport.close()


@pytest.fixture
def h(client: TestClient, tenant: CreatedTenant) -> Iterator[dict[str, str]]:
    headers = auth(tenant.admin_key.secret)
    yield headers
    for endpoint in client.get("/v1/webhook_endpoints", headers=headers).json()["data"]:
        client.post(f"/v1/webhook_endpoints/{endpoint['id']}/disable", headers=headers)


def _insecure(client: TestClient, h: dict[str, str]) -> None:
    patched = client.patch("/v1/tenant", json={"webhooks": {"allow_insecure": True}}, headers=h)
    assert patched.status_code == 200, patched.text
    assert patched.json()["webhooks"] == {"allow_insecure": True, "allowed_networks": []}


def test_target_rules_are_enforced_with_the_field_named(client: TestClient, h: dict[str, str]) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "http://example.com/hook"}, "#/url"),
        ({"url": "http://127.0.0.1:9/hook"}, "#/url"),
        ({"url": "https://10.1.2.3/hook"}, "#/url"),
        ({"url": "https://169.254.169.254/latest/meta-data"}, "#/url"),
        ({"url": "https://[::1]/hook"}, "#/url"),
        ({"url": "https://user:pw@example.com/hook"}, "#/url"),
        ({"url": "ftp://example.com/hook"}, "#/url"),
        ({"url": "https://example.com/hook", "event_types": ["Invoice Paid"]}, "#/event_types/0"),
        (
            {"url": "https://example.com/hook", "event_types": ["invoice.*", "invoice.exploded"]},
            "#/event_types/1",
        ),
        ({"url": "https://example.com/hook", "event_types": ["nothing.*"]}, "#/event_types/0"),
    ]
    for body, field in cases:
        response = client.post("/v1/webhook_endpoints", json=body, headers=h)
        assert_problem(response, 422, pointer=field)
    assert client.get("/v1/webhook_endpoints", headers=h).json()["data"] == []

    allowed = client.patch("/v1/tenant", json={"webhooks": {"allowed_networks": ["10.0.0.0/8"]}}, headers=h)
    assert allowed.status_code == 200, allowed.text
    assert (
        client.post("/v1/webhook_endpoints", json={"url": "https://10.1.2.3/hook"}, headers=h).status_code
        == 201
    )
    bad = client.patch("/v1/tenant", json={"webhooks": {"allowed_networks": ["ten"]}}, headers=h)
    assert_problem(bad, 422, pointer="#/webhooks/allowed_networks/0")


def test_an_endpoint_receives_signed_events_and_shows_its_deliveries(
    client: TestClient, h: dict[str, str], receiver: Receiver, relay: Relay
) -> None:
    _insecure(client, h)
    created = client.post(
        "/v1/webhook_endpoints",
        json={"url": receiver.url, "event_types": ["customer.*"], "description": "CRM"},
        headers=h,
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["event_types"] == ["customer.*"]
    eid = endpoint["id"]
    secrets = client.get(f"/v1/webhook_endpoints/{eid}/secret", headers=h).json()["data"]
    assert [s["secret"] for s in secrets] == [endpoint["secret"]]

    assert (
        client.post("/v1/customers", json={"external_id": "acme", "currency": "USD"}, headers=h).status_code
        == 201
    )
    relay.run_once()
    (request,) = receiver.received
    assert request.verify(endpoint["secret"])["data"]["external_id"] == "acme"

    deliveries = client.get(f"/v1/webhook_endpoints/{eid}/deliveries", headers=h).json()["data"]
    (delivery,) = deliveries
    assert delivery["status"] == "succeeded"
    assert delivery["event_id"] == request.id
    (attempt,) = delivery["attempts"]
    assert attempt["status_code"] == 204
    assert attempt["request_headers"]["webhook-id"] == request.id

    redelivered = client.post(
        f"/v1/events_outbox/{request.id}/redeliver", params={"endpoint_id": eid}, headers=h
    )
    assert redelivered.status_code == 202, redelivered.text
    assert redelivered.json()["deliveries"] == 1
    relay.run_once()
    assert [r.id for r in receiver.received] == [request.id, request.id]

    replayed = client.post(
        f"/v1/webhook_endpoints/{eid}/replay", params={"since": "2000-01-01T00:00:00Z"}, headers=h
    )
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["deliveries"] == 1  # only customer.* events
    first = client.get(f"/v1/webhook_endpoints/{eid}/deliveries", params={"limit": 2}, headers=h).json()
    rest = client.get(
        f"/v1/webhook_endpoints/{eid}/deliveries",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=h,
    ).json()
    origins = [d["origin"] for d in first["data"] + rest["data"]]
    assert origins == ["replay", "redeliver", "relay"]  # newest first, each once
    assert rest["next_cursor"] is None
    pending = client.get(f"/v1/webhook_endpoints/{eid}/deliveries", params={"status": "pending"}, headers=h)
    assert [d["origin"] for d in pending.json()["data"]] == ["replay"]
    assert_problem(
        client.post(f"/v1/webhook_endpoints/{eid}/replay", params={"since": "soon"}, headers=h), 422
    )

    rotated = client.post(
        f"/v1/webhook_endpoints/{eid}/secret/rotate", json={"overlap_seconds": 60}, headers=h
    )
    assert rotated.status_code == 200, rotated.text
    secrets = client.get(f"/v1/webhook_endpoints/{eid}/secret", headers=h).json()["data"]
    assert [s["secret"] for s in secrets] == [rotated.json()["secret"], endpoint["secret"]]
    assert secrets[1]["expires_at"] is not None

    disabled = client.post(f"/v1/webhook_endpoints/{eid}/disable", headers=h)
    assert (disabled.json()["enabled"], disabled.json()["disabled_reason"]) == (False, "manual")
    assert_problem(
        client.post(f"/v1/events_outbox/{request.id}/redeliver", params={"endpoint_id": eid}, headers=h), 409
    )
    patched = client.patch(
        f"/v1/webhook_endpoints/{eid}", json={"enabled": True, "description": "CRM 2"}, headers=h
    )
    assert (patched.json()["enabled"], patched.json()["description"]) == (True, "CRM 2")


def test_the_outbox_feed_pages_with_a_cursor_that_never_skips(
    client: TestClient, h: dict[str, str], tenant: CreatedTenant
) -> None:
    for i in range(5):
        client.post("/v1/customers", json={"external_id": f"c{i}", "currency": "USD"}, headers=h)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "event_type": "customer.created"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/outbox", params=params, headers=h).json()
        if not page["data"]:
            break
        seen += [e["data"]["external_id"] for e in page["data"]]
        cursor = page["next_cursor"]
    assert seen == [f"c{i}" for i in range(5)]
    assert cursor is not None
    client.post("/v1/customers", json={"external_id": "late", "currency": "USD"}, headers=h)
    page = client.get("/v1/outbox", params={"cursor": cursor, "event_type": "customer.created"}, headers=h)
    assert [e["data"]["external_id"] for e in page.json()["data"]] == ["late"]
    assert_problem(client.get("/v1/outbox", params={"cursor": "nope"}, headers=h), 422, parameter="cursor")


def test_endpoints_need_an_admin_key_and_are_the_tenants_own(
    client: TestClient, h: dict[str, str], other_tenant: CreatedTenant
) -> None:
    created = client.post("/v1/webhook_endpoints", json={"url": "https://example.com/hook"}, headers=h)
    assert created.status_code == 201
    other = auth(other_tenant.admin_key.secret)
    assert_problem(client.get(f"/v1/webhook_endpoints/{created.json()['id']}", headers=other), 404)
    key = client.post("/v1/api_keys", json={"name": "reader", "scopes": ["read"]}, headers=h).json()["secret"]
    assert_problem(client.get("/v1/webhook_endpoints", headers=auth(key)), 403)
    assert client.get("/v1/outbox", headers=auth(key)).status_code == 200
