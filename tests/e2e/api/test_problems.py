"""Bad input gets problem+json naming the field, and writes nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from accrual.services.tenants import CreatedTenant
from accrual.store.database import Database
from tests.support import assert_problem, auth, count_rows


def _writes(db: Database, tenant: CreatedTenant) -> tuple[int, int, int]:
    tid = tenant.tenant.tenant_id
    return (
        count_rows(db, "api_keys", tid),
        count_rows(db, "audit_log", tid),
        count_rows(db, "outbox_events", tid),
    )


def test_missing_field_is_named_and_nothing_is_written(
    client: TestClient, db: Database, tenant: CreatedTenant
) -> None:
    before = _writes(db, tenant)
    response = client.post("/v1/api_keys", json={"scopes": ["read"]}, headers=auth(tenant.admin_key.secret))
    body = assert_problem(response, 422, pointer="#/name")
    assert "name" in body["detail"]
    assert _writes(db, tenant) == before


def test_every_bad_field_is_listed(client: TestClient, db: Database, tenant: CreatedTenant) -> None:
    before = _writes(db, tenant)
    response = client.post(
        "/v1/api_keys",
        json={"name": "", "scopes": ["read", "root"], "colour": "red"},
        headers=auth(tenant.admin_key.secret),
    )
    body = assert_problem(response, 422)
    pointers = {e["pointer"] for e in body["errors"]}
    assert pointers == {"#/name", "#/scopes/1", "#/colour"}
    assert _writes(db, tenant) == before


def test_malformed_json_is_422(client: TestClient, tenant: CreatedTenant) -> None:
    response = client.post(
        "/v1/api_keys",
        content=b'{"name": "x", "scopes": [',
        headers=auth(tenant.admin_key.secret) | {"content-type": "application/json"},
    )
    assert_problem(response, 422)


def test_rule_checked_in_the_service_names_its_field(
    client: TestClient, db: Database, tenant: CreatedTenant
) -> None:
    before = _writes(db, tenant)
    response = client.patch(
        "/v1/tenant", json={"timezone": "Mars/Olympus"}, headers=auth(tenant.admin_key.secret)
    )
    body = assert_problem(response, 422, pointer="#/timezone")
    assert "Mars/Olympus" in body["detail"]
    assert _writes(db, tenant) == before
    assert client.get("/v1/tenant", headers=auth(tenant.admin_key.secret)).json()["timezone"] == "UTC"


def test_naive_timestamps_are_refused(client: TestClient, tenant: CreatedTenant) -> None:
    response = client.post(
        "/v1/test_clocks",
        json={"name": "c", "frozen_time": "2026-01-01T00:00:00"},
        headers=auth(tenant.admin_key.secret),
    )
    assert_problem(response, 422, pointer="#/frozen_time")


def test_bad_query_parameters_are_named(client: TestClient, tenant: CreatedTenant) -> None:
    headers = auth(tenant.admin_key.secret)
    assert_problem(client.get("/v1/api_keys?limit=1000", headers=headers), 422, parameter="limit")
    assert_problem(client.get("/v1/api_keys?cursor=garbage!", headers=headers), 422, parameter="cursor")


def test_moving_a_clock_back_is_refused_and_changes_nothing(
    client: TestClient, tenant: CreatedTenant
) -> None:
    headers = auth(tenant.admin_key.secret)
    clock = client.post(
        "/v1/test_clocks", json={"name": "c", "frozen_time": "2026-03-01T00:00:00Z"}, headers=headers
    )
    clock_id = clock.json()["id"]
    response = client.post(
        f"/v1/test_clocks/{clock_id}/advance", json={"frozen_time": "2026-02-01T00:00:00Z"}, headers=headers
    )
    assert_problem(response, 422, pointer="#/frozen_time")
    assert (
        client.get(f"/v1/test_clocks/{clock_id}", headers=headers).json()["frozen_time"]
        == "2026-03-01T00:00:00Z"
    )


def test_unknown_routes_and_methods_are_problems_too(client: TestClient, tenant: CreatedTenant) -> None:
    assert_problem(client.get("/v1/no_such_thing", headers=auth(tenant.admin_key.secret)), 404)
    assert_problem(client.delete("/v1/tenant", headers=auth(tenant.admin_key.secret)), 405)


def test_a_body_that_is_not_json_is_415(client: TestClient, db: Database, tenant: CreatedTenant) -> None:
    before = _writes(db, tenant)
    response = client.post(
        "/v1/api_keys",
        content=b"name=x&scopes=read",
        headers=auth(tenant.admin_key.secret) | {"content-type": "application/x-www-form-urlencoded"},
    )
    body = assert_problem(response, 415, parameter="Content-Type")
    assert "application/json" in body["detail"]
    assert _writes(db, tenant) == before
