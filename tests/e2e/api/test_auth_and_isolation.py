"""Keys authenticate, scopes authorize, and one tenant never sees another's data."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from accrual.services import api_keys
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database
from tests.support import assert_problem, auth

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def key_with(db: Database, tenant: CreatedTenant, *scopes: str) -> str:
    issued = api_keys.create_api_key(
        db, tenant_id=tenant.tenant.tenant_id, name="k", scopes=scopes, actor=Actor.cli("t"), now=NOW
    )
    return issued.secret


def test_admin_key_reads_its_tenant(client: TestClient, tenant: CreatedTenant) -> None:
    response = client.get("/v1/tenant", headers=auth(tenant.admin_key.secret))
    assert response.status_code == 200
    assert response.json()["id"] == str(tenant.tenant.tenant_id)
    assert response.json()["object"] == "tenant"


def test_missing_key_is_401_with_a_challenge(client: TestClient) -> None:
    response = client.get("/v1/tenant")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_key_is_401(client: TestClient) -> None:
    assert_problem(client.get("/v1/tenant", headers=auth("acr_not-a-real-key")), 401)
    assert_problem(client.get("/v1/tenant", headers=auth("sk_live_whatever")), 401)


def test_revoked_key_is_refused_at_once(client: TestClient, db: Database, tenant: CreatedTenant) -> None:
    secret = key_with(db, tenant, "read")
    assert client.get("/v1/tenant", headers=auth(secret)).status_code == 200
    key_id = client.get("/v1/api_keys", headers=auth(tenant.admin_key.secret)).json()["data"][0]["id"]
    revoked = client.post(f"/v1/api_keys/{key_id}/revoke", headers=auth(tenant.admin_key.secret))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    body = assert_problem(client.get("/v1/tenant", headers=auth(secret)), 401)
    assert "revoked" in body["detail"]


def test_scopes_are_enforced(client: TestClient, db: Database, tenant: CreatedTenant) -> None:
    ingest = key_with(db, tenant, "ingest")
    read = key_with(db, tenant, "read")
    finance = key_with(db, tenant, "finance")
    assert_problem(client.get("/v1/tenant", headers=auth(ingest)), 403)
    assert client.get("/v1/tenant", headers=auth(read)).status_code == 200
    assert_problem(
        client.post("/v1/api_keys", json={"name": "x", "scopes": ["read"]}, headers=auth(read)), 403
    )
    assert_problem(client.patch("/v1/tenant", json={"name": "x"}, headers=auth(read)), 403)
    assert_problem(client.get("/v1/audit_log", headers=auth(read)), 403)
    assert client.get("/v1/audit_log", headers=auth(finance)).status_code == 200
    write = key_with(db, tenant, "write")
    created = client.post(
        "/v1/test_clocks", json={"name": "c", "frozen_time": "2026-01-01T00:00:00Z"}, headers=auth(write)
    )
    assert created.status_code == 201


def test_a_tenant_cannot_see_or_touch_another_tenants_objects(
    client: TestClient, tenant: CreatedTenant, other_tenant: CreatedTenant
) -> None:
    mine, theirs = auth(tenant.admin_key.secret), auth(other_tenant.admin_key.secret)
    their_key_id = other_tenant.admin_key.key.api_key_id
    their_clock = client.post(
        "/v1/test_clocks", json={"name": "theirs", "frozen_time": "2026-01-01T00:00:00Z"}, headers=theirs
    ).json()["id"]

    # Not 403: a 404 does not even confirm the id exists.
    assert_problem(client.get(f"/v1/api_keys/{their_key_id}", headers=mine), 404)
    assert_problem(client.post(f"/v1/api_keys/{their_key_id}/revoke", headers=mine), 404)
    assert_problem(client.get(f"/v1/test_clocks/{their_clock}", headers=mine), 404)
    assert_problem(
        client.post(
            f"/v1/test_clocks/{their_clock}/advance",
            json={"frozen_time": "2026-02-01T00:00:00Z"},
            headers=mine,
        ),
        404,
    )
    listed_keys = {k["id"] for k in client.get("/v1/api_keys?limit=100", headers=mine).json()["data"]}
    assert str(their_key_id) not in listed_keys
    assert their_clock not in {c["id"] for c in client.get("/v1/test_clocks", headers=mine).json()["data"]}
    entities = {e["entity_id"] for e in client.get("/v1/audit_log?limit=100", headers=mine).json()["data"]}
    assert str(their_key_id) not in entities
    assert their_clock not in entities
    assert client.get("/v1/tenant", headers=mine).json()["id"] == str(tenant.tenant.tenant_id)

    # Their objects are unchanged.
    assert client.get(f"/v1/api_keys/{their_key_id}", headers=theirs).json()["revoked_at"] is None
    clock = client.get(f"/v1/test_clocks/{their_clock}", headers=theirs).json()
    assert clock["frozen_time"] == "2026-01-01T00:00:00Z"


def test_the_secret_is_shown_once(client: TestClient, tenant: CreatedTenant) -> None:
    headers = auth(tenant.admin_key.secret)
    created = client.post("/v1/api_keys", json={"name": "ingestion", "scopes": ["ingest"]}, headers=headers)
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("acr_")
    assert body["secret"].startswith(body["prefix"])
    fetched = client.get(f"/v1/api_keys/{body['id']}", headers=headers).json()
    assert "secret" not in fetched
    assert fetched["scopes"] == ["ingest"]
    assert client.get("/v1/tenant", headers=auth(body["secret"])).status_code == 403  # ingest-only
