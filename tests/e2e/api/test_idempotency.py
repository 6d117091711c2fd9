"""Idempotency-Key with Stripe's semantics: replay, mismatch, concurrency, one effect."""

from __future__ import annotations

import concurrent.futures

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from accrual.services.tenants import CreatedTenant
from accrual.store.database import Database
from tests.support import assert_problem, auth, count_rows


def test_same_key_and_body_replays_the_first_response(
    client: TestClient, db: Database, tenant: CreatedTenant
) -> None:
    headers = auth(tenant.admin_key.secret) | {"Idempotency-Key": "create-ingest-key-1"}
    body = {"name": "ingest", "scopes": ["ingest"]}
    first = client.post("/v1/api_keys", json=body, headers=headers)
    keys_after_first = count_rows(db, "api_keys", tenant.tenant.tenant_id)
    second = client.post("/v1/api_keys", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()  # the same key, the same secret: nothing new was made
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert count_rows(db, "api_keys", tenant.tenant.tenant_id) == keys_after_first


def test_same_json_spelled_differently_is_the_same_request(client: TestClient, tenant: CreatedTenant) -> None:
    headers = auth(tenant.admin_key.secret) | {
        "Idempotency-Key": "spelling",
        "content-type": "application/json",
    }
    first = client.post("/v1/api_keys", content=b'{"name":"a","scopes":["read"]}', headers=headers)
    second = client.post("/v1/api_keys", content=b'{ "scopes": ["read"], "name": "a" }', headers=headers)
    assert first.json()["id"] == second.json()["id"]


def test_same_key_with_a_different_body_is_refused(
    client: TestClient, db: Database, tenant: CreatedTenant
) -> None:
    headers = auth(tenant.admin_key.secret) | {"Idempotency-Key": "reused"}
    client.post("/v1/api_keys", json={"name": "a", "scopes": ["read"]}, headers=headers)
    before = count_rows(db, "api_keys", tenant.tenant.tenant_id)
    body = assert_problem(
        client.post("/v1/api_keys", json={"name": "b", "scopes": ["read"]}, headers=headers),
        422,
        parameter="Idempotency-Key",
    )
    assert "different" in body["detail"]
    assert "POST /v1/api_keys" in body["detail"]
    assert count_rows(db, "api_keys", tenant.tenant.tenant_id) == before


def test_same_key_on_another_endpoint_is_refused(client: TestClient, tenant: CreatedTenant) -> None:
    headers = auth(tenant.admin_key.secret) | {"Idempotency-Key": "cross-endpoint"}
    client.post("/v1/test_clocks", json={"name": "c", "frozen_time": "2026-01-01T00:00:00Z"}, headers=headers)
    assert_problem(client.post("/v1/api_keys", json={"name": "c", "scopes": ["read"]}, headers=headers), 422)


def test_errors_are_replayed_but_validation_errors_are_not_stored(
    client: TestClient, tenant: CreatedTenant
) -> None:
    admin = auth(tenant.admin_key.secret)
    missing = "00000000-0000-7000-8000-000000000000"
    headers = admin | {"Idempotency-Key": "revoke-missing"}
    assert_problem(client.post(f"/v1/api_keys/{missing}/revoke", headers=headers), 404)
    replay = client.post(f"/v1/api_keys/{missing}/revoke", headers=headers)
    assert_problem(replay, 404)
    assert replay.headers["idempotent-replayed"] == "true"

    headers = admin | {"Idempotency-Key": "fix-and-retry"}
    assert_problem(client.post("/v1/api_keys", json={"name": "x"}, headers=headers), 422)
    fixed = client.post("/v1/api_keys", json={"name": "x", "scopes": ["read"]}, headers=headers)
    assert fixed.status_code == 201


def test_keys_belong_to_their_tenant(
    client: TestClient, tenant: CreatedTenant, other_tenant: CreatedTenant
) -> None:
    body = {"name": "shared key name", "scopes": ["read"]}
    mine = client.post(
        "/v1/api_keys", json=body, headers=auth(tenant.admin_key.secret) | {"Idempotency-Key": "k"}
    )
    theirs = client.post(
        "/v1/api_keys", json=body, headers=auth(other_tenant.admin_key.secret) | {"Idempotency-Key": "k"}
    )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


def test_clock_advance_is_idempotent_too(client: TestClient, tenant: CreatedTenant) -> None:
    admin = auth(tenant.admin_key.secret)
    clock = client.post(
        "/v1/test_clocks", json={"name": "c", "frozen_time": "2026-01-01T00:00:00Z"}, headers=admin
    )
    url = f"/v1/test_clocks/{clock.json()['id']}/advance"
    headers = admin | {"Idempotency-Key": "advance-to-feb"}
    first = client.post(url, json={"frozen_time": "2026-02-01T00:00:00Z"}, headers=headers)
    client.post(url, json={"frozen_time": "2026-03-01T00:00:00Z"}, headers=admin)
    again = client.post(url, json={"frozen_time": "2026-02-01T00:00:00Z"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("attempt", range(2))
def test_ten_concurrent_replays_have_one_effect(
    live_server: str, db: Database, tenant: CreatedTenant, attempt: int
) -> None:
    tid = tenant.tenant.tenant_id
    keys_before = count_rows(db, "api_keys", tid)
    events_before = count_rows(db, "outbox_events", tid)
    headers = auth(tenant.admin_key.secret) | {"Idempotency-Key": f"concurrent-{attempt}"}
    body = {"name": "concurrent", "scopes": ["write"]}

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=live_server, timeout=30) as http:
            return http.post("/v1/api_keys", json=body, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(send, range(10)))

    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r.json() for r in responses if r.status_code == 201]
    assert created, statuses
    assert all(c["id"] == created[0]["id"] for c in created)
    for conflict in (r for r in responses if r.status_code == 409):
        assert_problem(conflict, 409, parameter="Idempotency-Key")
    assert count_rows(db, "api_keys", tid) == keys_before + 1
    assert count_rows(db, "outbox_events", tid) == events_before + 1
    # Once the first has finished, a retry replays it.
    with httpx.Client(base_url=live_server) as http:
        late = http.post("/v1/api_keys", json=body, headers=headers)
    assert late.status_code == 201
    assert late.json()["id"] == created[0]["id"]
