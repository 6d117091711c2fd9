"""The catalog over HTTP: define, version and publish; bad input named by field, nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from accrual.services.tenants import CreatedTenant
from accrual.store.database import Database
from tests.support import assert_problem, auth, count_rows

PLAN: dict[str, Any] = {
    "code": "pro",
    "name": "Pro",
    "currency": "USD",
    "interval": "month",
    "charges": [
        {"code": "base", "model": "flat", "amount": "50.00"},
        {
            "code": "calls",
            "meter": "api_calls",
            "model": "graduated",
            "tiers": [
                {"up_to": "10", "unit_amount": "10", "flat_amount": "2"},
                {"up_to": None, "unit_amount": "5", "flat_amount": "3"},
            ],
        },
    ],
}


@pytest.fixture
def headers(client: TestClient, tenant: CreatedTenant) -> dict[str, str]:
    h = auth(tenant.admin_key.secret)
    assert (
        client.post("/v1/meters", json={"code": "api_calls", "aggregation": "count"}, headers=h).status_code
        == 201
    )
    return h


def test_define_publish_and_version_a_plan(client: TestClient, headers: dict[str, str]) -> None:
    created = client.post("/v1/plans", json=PLAN, headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["current_version"] is None
    assert body["open_version"]["status"] == "draft"
    published = client.post("/v1/plans/pro/versions/1/publish", headers=headers)
    assert published.json()["status"] == "published"
    plan = client.get("/v1/plans/pro", headers=headers).json()
    assert plan["current_version"]["version"] == 1
    assert plan["current_version"]["charges"][1]["tiers"][0]["up_to"] == "10"

    # A published version cannot be edited through the API: there is no draft to edit.
    terms = {"interval": "month", "charges": [{"code": "base", "model": "flat", "amount": "60.00"}]}
    assert_problem(client.put("/v1/plans/pro/draft", json=terms, headers=headers), 409)
    assert_problem(client.post("/v1/plans/pro/versions/1/publish", headers=headers), 409)

    draft = client.post("/v1/plans/pro/versions", json={}, headers=headers)
    assert draft.status_code == 201
    assert draft.json()["version"] == 2
    assert (
        client.put("/v1/plans/pro/draft", json=terms, headers=headers).json()["charges"][0]["amount"]
        == "60.00"
    )
    client.post("/v1/plans/pro/versions/2/publish", headers=headers)
    versions = client.get("/v1/plans/pro/versions", headers=headers).json()
    assert [(v["version"], v["status"]) for v in versions] == [(1, "published"), (2, "published")]
    assert client.get("/v1/plans/pro/versions/1", headers=headers).json()["charges"][0]["amount"] == "50.00"


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        (lambda p: p.update(currency="XYZ"), "#/currency"),
        (lambda p: p["charges"][0].update(amount="-5"), "#/charges/0/amount"),
        (lambda p: p["charges"][0].update(amount="abc"), "#/charges/0/amount"),
        (lambda p: p["charges"][0].update(amount=50.5), "#/charges/0/amount"),
        (
            lambda p: p["charges"][1]["tiers"].insert(0, {"up_to": "20", "unit_amount": "1"}),
            "#/charges/1/tiers/1/up_to",
        ),
        (lambda p: p["charges"][1]["tiers"][1].update(up_to="100"), "#/charges/1/tiers/1/up_to"),
        (lambda p: p["charges"][1]["tiers"][1].update({"from": "11"}), "#/charges/1/tiers/1/from"),
        (lambda p: p["charges"][1]["tiers"][1].update({"from": "9"}), "#/charges/1/tiers/1/from"),
        (lambda p: p["charges"][1].update(meter="storage"), "#/charges/1/meter"),
        (
            lambda p: p["charges"].append(
                {
                    "code": "pkg",
                    "meter": "api_calls",
                    "model": "package",
                    "package_size": "0",
                    "package_amount": "5",
                }
            ),
            "#/charges/2/package_size",
        ),
        (
            lambda p: p["charges"].append(
                {"code": "fee", "meter": "api_calls", "model": "percentage", "rate": "101"}
            ),
            "#/charges/2/rate",
        ),
        (lambda p: p["charges"].append({"code": "base", "model": "flat", "amount": "1"}), "#/charges/2/code"),
        (lambda p: p.update(interval="fortnight"), "#/interval"),
    ],
)
def test_bad_plans_are_refused_naming_the_field(
    client: TestClient,
    db: Database,
    tenant: CreatedTenant,
    headers: dict[str, str],
    mutate: Any,
    pointer: str,
) -> None:
    import copy

    plan = copy.deepcopy(PLAN)
    mutate(plan)
    before = (
        count_rows(db, "plans", tenant.tenant.tenant_id),
        count_rows(db, "audit_log", tenant.tenant.tenant_id),
    )
    response = client.post("/v1/plans", json=plan, headers=headers)
    assert_problem(response, 422, pointer=pointer)
    after = (
        count_rows(db, "plans", tenant.tenant.tenant_id),
        count_rows(db, "audit_log", tenant.tenant.tenant_id),
    )
    assert after == before


def test_meter_in_use_explains_itself(client: TestClient, headers: dict[str, str]) -> None:
    client.post("/v1/plans", json=PLAN | {"publish": True}, headers=headers)
    response = client.patch(
        "/v1/meters/api_calls", json={"aggregation": "sum", "field": "n"}, headers=headers
    )
    body = assert_problem(response, 409, pointer="#/aggregation")
    assert "pro v1" in body["detail"]
    assert (
        client.patch("/v1/meters/api_calls", json={"name": "API calls"}, headers=headers).json()["name"]
        == "API calls"
    )


def test_maker_checker_over_http(client: TestClient, tenant: CreatedTenant, headers: dict[str, str]) -> None:
    assert (
        client.patch("/v1/tenant", json={"maker_checker": True}, headers=headers).json()["maker_checker"]
        is True
    )
    client.post("/v1/plans", json=PLAN, headers=headers)
    submitted = client.post("/v1/plans/pro/versions/1/publish", headers=headers)
    assert submitted.json()["status"] == "pending_approval"
    body = assert_problem(client.post("/v1/plans/pro/versions/1/approve", headers=headers), 403)
    assert "different person" in body["detail"]
    checker = client.post(
        "/v1/api_keys", json={"name": "checker", "scopes": ["write"]}, headers=headers
    ).json()
    approved = client.post("/v1/plans/pro/versions/1/approve", headers=auth(checker["secret"]))
    assert approved.json()["status"] == "published"
    assert approved.json()["published_by"] == f"api_key:{checker['id']}"


def test_coupons_tax_rates_products(client: TestClient, headers: dict[str, str]) -> None:
    coupon = client.post(
        "/v1/coupons",
        json={"code": "WELCOME", "kind": "percentage", "value": "10", "duration": "repeating", "periods": 3},
        headers=headers,
    )
    assert coupon.status_code == 201, coupon.text
    assert coupon.json()["terms"]["periods"] == 3
    assert_problem(
        client.post(
            "/v1/coupons",
            json={"code": "BAD", "kind": "percentage", "value": "150", "duration": "once"},
            headers=headers,
        ),
        422,
        pointer="#/value",
    )
    tax = client.post(
        "/v1/tax_rates", json={"code": "VAT20", "rate": "20", "inclusive": True}, headers=headers
    )
    assert tax.json()["rate"] == "20"
    assert_problem(client.post("/v1/tax_rates", json={"code": "VAT20", "rate": "20"}, headers=headers), 409)
    product = client.post("/v1/products", json={"code": "api", "name": "API"}, headers=headers)
    assert product.status_code == 201
    assert (
        client.post("/v1/plans", json=PLAN | {"product": "api"}, headers=headers).json()["product"] == "api"
    )
    assert client.post("/v1/coupons/WELCOME/archive", headers=headers).json()["archived_at"] is not None
    listed = client.get("/v1/coupons", headers=headers).json()
    assert listed["data"] == []


def test_catalog_apply_over_http(client: TestClient, tenant: CreatedTenant) -> None:
    headers = auth(tenant.admin_key.secret)
    document = {"meters": [{"code": "api_calls", "aggregation": "count"}], "plans": [PLAN]}
    first = client.post("/v1/catalog/apply", json=document, headers=headers).json()
    assert first["changed"] is True
    second = client.post("/v1/catalog/apply", json=document, headers=headers).json()
    assert second["changed"] is False
    assert {r["outcome"] for r in second["results"]} == {"unchanged"}


def test_lists_page_by_code(client: TestClient, headers: dict[str, str]) -> None:
    for code in ("c", "a", "b"):
        client.post("/v1/meters", json={"code": code, "aggregation": "count"}, headers=headers)
    first = client.get("/v1/meters?limit=2", headers=headers).json()
    assert [m["code"] for m in first["data"]] == ["a", "api_calls"]
    rest = client.get(f"/v1/meters?limit=2&cursor={first['next_cursor']}", headers=headers).json()
    assert [m["code"] for m in rest["data"]] == ["b", "c"]
    assert rest["has_more"] is False


def test_read_keys_cannot_change_the_catalog(client: TestClient, headers: dict[str, str]) -> None:
    reader = client.post("/v1/api_keys", json={"name": "r", "scopes": ["read"]}, headers=headers).json()[
        "secret"
    ]
    assert_problem(client.post("/v1/plans", json=PLAN, headers=auth(reader)), 403)
    assert client.get("/v1/meters", headers=auth(reader)).status_code == 200
