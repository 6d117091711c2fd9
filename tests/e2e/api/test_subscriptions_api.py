"""Customers and subscriptions over HTTP, on a test clock."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from accrual.services.tenants import CreatedTenant
from accrual.store.database import Database
from tests.support import assert_problem, auth, count_rows

CATALOG = {
    "meters": [{"code": "calls", "aggregation": "count"}],
    "plans": [
        {
            "code": "basic",
            "currency": "USD",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "31"}],
        },
        {
            "code": "pro",
            "currency": "USD",
            "interval": "month",
            "charges": [{"code": "base", "model": "flat", "amount": "62"}],
        },
    ],
}


@pytest.fixture
def h(client: TestClient, tenant: CreatedTenant) -> dict[str, str]:
    headers = auth(tenant.admin_key.secret)
    assert client.post("/v1/catalog/apply", json=CATALOG, headers=headers).status_code == 200
    return headers


def _clock(client: TestClient, h: dict[str, str], at: str = "2026-01-01T00:00:00Z") -> str:
    clock_id: str = client.post("/v1/test_clocks", json={"name": "sim", "frozen_time": at}, headers=h).json()[
        "id"
    ]
    return clock_id


def _customer(client: TestClient, h: dict[str, str], clock: str, external_id: str = "acme") -> dict[str, Any]:
    response = client.post(
        "/v1/customers",
        json={"external_id": external_id, "currency": "USD", "timezone": "Europe/Paris", "test_clock": clock},
        headers=h,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_subscribe_advance_and_read_the_timeline(client: TestClient, h: dict[str, str]) -> None:
    clock = _clock(client, h)
    _customer(client, h, clock)
    created = client.post(
        "/v1/subscriptions", json={"external_id": "sub_1", "customer": "acme", "plan": "basic"}, headers=h
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["status"] == "active"
    assert sub["current_period"] == {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    advanced = client.post(
        f"/v1/test_clocks/{clock}/advance", json={"frozen_time": "2026-03-15T00:00:00Z"}, headers=h
    )
    # Each renewal, then billing of what it made due (the first invoice, from the start, too).
    assert [(s["provider"], s["at"]) for s in advanced.json()["steps"]] == [
        ("billing", "2026-01-01T00:00:00Z"),
        ("subscriptions", "2026-02-01T00:00:00Z"),
        ("billing", "2026-02-01T00:00:00Z"),
        ("subscriptions", "2026-03-01T00:00:00Z"),
        ("billing", "2026-03-01T00:00:00Z"),
    ]
    by_external = client.get("/v1/subscriptions/external/sub_1", headers=h).json()
    assert by_external["id"] == sub["id"]
    assert by_external["current_period"]["start"] == "2026-03-01T00:00:00Z"
    timeline = client.get(f"/v1/subscriptions/{sub['id']}/timeline", headers=h).json()
    assert [(e["action"], e["to_status"]) for e in timeline["entries"]] == [
        ("create", "active"),
        ("renew", "active"),
        ("renew", "active"),
    ]
    assert "renewed for" in timeline["entries"][1]["reason"]
    assert client.get("/v1/customers/external/acme", headers=h).json()["timezone"] == "Europe/Paris"


def test_change_pause_resume_cancel(client: TestClient, h: dict[str, str]) -> None:
    clock = _clock(client, h)
    _customer(client, h, clock)
    sub = client.post("/v1/subscriptions", json={"customer": "acme", "plan": "pro"}, headers=h).json()
    sid = sub["id"]
    downgrade = client.post(f"/v1/subscriptions/{sid}/change", json={"plan": "basic"}, headers=h).json()
    assert downgrade["scheduled_change"]["at_period_end"] is True
    pending = client.get(f"/v1/subscriptions/{sid}/scheduled_changes", headers=h).json()
    assert len(pending) == 1
    withdrawn = client.post(
        f"/v1/subscriptions/{sid}/scheduled_changes/{pending[0]['id']}/cancel", headers=h
    ).json()
    assert withdrawn["status"] == "canceled"
    assert client.post(f"/v1/subscriptions/{sid}/pause", headers=h).json()["status"] == "paused"
    assert_problem(client.post(f"/v1/subscriptions/{sid}/pause", headers=h), 409)
    client.post(f"/v1/test_clocks/{clock}/advance", json={"frozen_time": "2026-01-10T00:00:00Z"}, headers=h)
    assert client.post(f"/v1/subscriptions/{sid}/resume", headers=h).json()["status"] == "active"
    canceled = client.post(f"/v1/subscriptions/{sid}/cancel", json={"timing": "immediate"}, headers=h).json()
    assert canceled["status"] == "ended"
    body = assert_problem(client.post(f"/v1/subscriptions/{sid}/resume", headers=h), 409)
    assert body["type"].endswith("subscription-already-ended")


def test_bad_subscriptions_are_refused_naming_the_field(
    client: TestClient, db: Database, tenant: CreatedTenant, h: dict[str, str]
) -> None:
    clock = _clock(client, h)
    _customer(client, h, clock)
    before = count_rows(db, "subscriptions", tenant.tenant.tenant_id)
    assert_problem(
        client.post("/v1/subscriptions", json={"customer": "nobody", "plan": "basic"}, headers=h),
        422,
        pointer="#/customer",
    )
    assert_problem(
        client.post("/v1/subscriptions", json={"customer": "acme", "plan": "nope"}, headers=h),
        422,
        pointer="#/plan",
    )
    assert_problem(
        client.post(
            "/v1/subscriptions", json={"customer": "acme", "plan": "basic", "quantity": 0}, headers=h
        ),
        422,
        pointer="#/quantity",
    )
    assert_problem(
        client.post(
            "/v1/subscriptions", json={"customer": "acme", "plan": "basic", "coupon": "NOPE"}, headers=h
        ),
        422,
        pointer="#/coupon",
    )
    assert count_rows(db, "subscriptions", tenant.tenant.tenant_id) == before
    assert_problem(
        client.post("/v1/customers", json={"external_id": "acme", "currency": "USD"}, headers=h),
        409,
        pointer="#/external_id",
    )
    assert_problem(
        client.post("/v1/customers", json={"external_id": "x", "currency": "usd"}, headers=h),
        422,
        pointer="#/currency",
    )


def test_the_loser_of_a_race_gets_409_with_the_current_state(
    client: TestClient, db: Database, tenant: CreatedTenant, h: dict[str, str]
) -> None:
    clock = _clock(client, h)
    _customer(client, h, clock)
    sid = client.post("/v1/subscriptions", json={"customer": "acme", "plan": "basic"}, headers=h).json()["id"]
    with db.transaction() as conn:
        # Another change holds the subscription's row lock.
        conn.execute(sa.text("select 1 from subscriptions where subscription_id = :s for update"), {"s": sid})
        response = client.post(f"/v1/subscriptions/{sid}/change", json={"quantity": 2}, headers=h)
        body = assert_problem(response, 409)
        assert body["current"]["quantity"] == 1
        assert body["current"]["status"] == "active"


def test_concurrent_changes_are_serialized_and_none_is_lost(
    live_server: str, client: TestClient, db: Database, tenant: CreatedTenant, h: dict[str, str]
) -> None:
    clock = _clock(client, h)
    _customer(client, h, clock)
    sid = client.post("/v1/subscriptions", json={"customer": "acme", "plan": "basic"}, headers=h).json()["id"]

    def change(quantity: int) -> httpx.Response:
        with httpx.Client(base_url=live_server, timeout=30) as http:
            return http.post(
                f"/v1/subscriptions/{sid}/change",
                json={"quantity": quantity, "timing": "immediate"},
                headers=h,
            )

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(change, range(2, 10)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 409}, [r.text for r in responses]
    won = [q for q, r in zip(range(2, 10), responses, strict=True) if r.status_code == 200]
    assert won
    timeline = client.get(f"/v1/subscriptions/{sid}/timeline", headers=h).json()["entries"]
    changes = [e for e in timeline if e["action"] == "change"]
    assert len(changes) == len(won)  # every accepted change is in the history; none was lost
    final = client.get(f"/v1/subscriptions/{sid}", headers=h).json()["quantity"]
    assert final == changes[-1]["quantity"]
