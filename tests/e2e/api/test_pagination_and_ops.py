"""Cursor pagination, the operational endpoints, and the OpenAPI document."""

from __future__ import annotations

from fastapi.testclient import TestClient

from accrual.services.tenants import CreatedTenant
from tests.support import auth


def test_cursor_pages_cover_everything_once(client: TestClient, tenant: CreatedTenant) -> None:
    headers = auth(tenant.admin_key.secret)
    created = {tenant.admin_key.key.api_key_id.hex}
    for i in range(6):
        response = client.post("/v1/api_keys", json={"name": f"k{i}", "scopes": ["read"]}, headers=headers)
        created.add(response.json()["id"].replace("-", ""))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        url = "/v1/api_keys?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=headers).json()
        pages += 1
        seen.extend(item["id"].replace("-", "") for item in page["data"])
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == created
    assert seen == sorted(seen, reverse=True)  # newest first


def test_revoked_keys_are_listed_only_on_request(client: TestClient, tenant: CreatedTenant) -> None:
    headers = auth(tenant.admin_key.secret)
    key = client.post("/v1/api_keys", json={"name": "old", "scopes": ["read"]}, headers=headers).json()
    client.post(f"/v1/api_keys/{key['id']}/revoke", headers=headers)
    active = {k["id"] for k in client.get("/v1/api_keys", headers=headers).json()["data"]}
    every = {k["id"] for k in client.get("/v1/api_keys?include_revoked=true", headers=headers).json()["data"]}
    assert key["id"] not in active
    assert key["id"] in every


def test_health_readiness_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    client.get("/v1/tenant")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'accrual_http_requests_total{method="GET",route="/v1/tenant",status="401"}' in metrics.text
    assert "accrual_http_request_duration_seconds_bucket" in metrics.text


def test_openapi_documents_every_route_with_security_and_examples(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/tenant",
        "/v1/api_keys",
        "/v1/api_keys/{api_key_id}/revoke",
        "/v1/test_clocks",
        "/v1/test_clocks/{test_clock_id}/advance",
        "/v1/audit_log",
        "/v1/audit_log/verification",
    ):
        assert path in paths, path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    create = paths["/v1/api_keys"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    schemas = spec["components"]["schemas"]
    assert schemas["ApiKeyCreate"]["examples"]


def test_every_request_body_has_an_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody")
            if body is None:
                continue
            media = body["content"]["application/json"]
            ref = media["schema"].get("$ref", "")
            schema = schemas[ref.rsplit("/", 1)[-1]] if ref else media["schema"]
            if not (schema.get("examples") or media.get("example") or media.get("examples")):
                missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_every_operation_has_a_summary(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    unsummarized = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if not operation.get("summary")
    ]
    assert unsummarized == []
