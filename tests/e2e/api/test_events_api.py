"""Usage events over HTTP: batches, duplicates, conflicts, quarantine, CloudEvents, current usage."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from accrual.services.tenants import CreatedTenant
from accrual.store.database import Database
from tests.support import assert_problem, auth, count_rows

CATALOG = {
    "meters": [
        {"code": "calls", "aggregation": "count"},
        {"code": "gb", "aggregation": "sum", "field": "gb"},
    ],
    "plans": [
        {
            "code": "payg",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"code": "calls", "meter": "calls", "model": "per_unit", "amount": "0.05"},
                {"code": "gb", "meter": "gb", "model": "per_unit", "amount": "2"},
            ],
        }
    ],
}


@pytest.fixture
def h(client: TestClient, tenant: CreatedTenant) -> dict[str, str]:
    headers = auth(tenant.admin_key.secret)
    assert client.post("/v1/catalog/apply", json=CATALOG, headers=headers).status_code == 200
    clock = client.post(
        "/v1/test_clocks", json={"name": "c", "frozen_time": "2026-01-01T00:00:00Z"}, headers=headers
    )
    client.post(
        "/v1/customers",
        json={"external_id": "acme", "currency": "USD", "test_clock": clock.json()["id"]},
        headers=headers,
    )
    client.post(
        "/v1/subscriptions",
        json={"external_id": "sub_1", "customer": "acme", "plan": "payg"},
        headers=headers,
    )
    return headers


def _event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"e{i}",
        "subscription": "sub_1",
        "meter": "calls",
        "timestamp": "2026-01-05T10:00:00Z",
    } | extra


def test_batch_then_duplicates_and_a_conflict(client: TestClient, h: dict[str, str]) -> None:
    first = client.post("/v1/events", json=[_event(i) for i in range(5)], headers=h)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 5
    again = client.post(
        "/v1/events", json=[_event(0), _event(1, timestamp="2026-01-06T00:00:00Z"), _event(9)], headers=h
    ).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "rejected", "accepted"]
    assert "conflict" in again["results"][1]["error"]
    usage = client.get("/v1/subscriptions/external/sub_1", headers=h).json()
    current = client.get(f"/v1/subscriptions/{usage['id']}/usage", headers=h).json()
    calls = next(c for c in current["charges"] if c["charge"] == "calls")
    assert (calls["quantity"], calls["amount"]) == ("6", "0.30")


def test_a_batch_with_one_bad_event_stores_nothing(
    client: TestClient, db: Database, tenant: CreatedTenant, h: dict[str, str]
) -> None:
    before = count_rows(db, "usage_event_ids", tenant.tenant.tenant_id)
    bad = [
        _event(1),
        {"id": "x", "meter": "calls"},
        _event(3, timestamp="yesterday"),
        _event(4, colour="red"),
    ]
    response = client.post("/v1/events", json=bad, headers=h)
    body = assert_problem(response, 422)
    assert [(e["index"], e["pointer"]) for e in body["invalid_events"]] == [
        (1, "#/1/subscription"),
        (2, "#/2/timestamp"),
        (3, "#/3/colour"),
    ]
    assert count_rows(db, "usage_event_ids", tenant.tenant.tenant_id) == before


def test_unknown_things_are_quarantined_then_counted(client: TestClient, h: dict[str, str]) -> None:
    sent = client.post(
        "/v1/events",
        json=[
            {"id": "q1", "customer": "globex", "meter": "calls", "timestamp": "2026-01-05T00:00:00Z"},
            {"id": "q2", "subscription": "sub_1", "meter": "storage", "timestamp": "2026-01-05T00:00:00Z"},
            {
                "id": "q3",
                "subscription": "sub_1",
                "meter": "gb",
                "timestamp": "2026-01-05T00:00:00Z",
                "properties": {"gb": "lots"},
            },
        ],
        headers=h,
    ).json()
    assert [r["quarantined"] for r in sent["results"]] == [
        "unknown_customer",
        "unknown_meter",
        "invalid_value",
    ]
    held = client.get("/v1/events/quarantine", headers=h).json()["data"]
    assert {e["id"]: e["reason"] for e in held} == {
        "q1": "unknown_customer",
        "q2": "unknown_meter",
        "q3": "invalid_value",
    }
    # The customer appears with a subscription: its event is counted at once.
    clock = client.get("/v1/test_clocks", headers=h).json()["data"][0]["id"]
    client.post(
        "/v1/customers", json={"external_id": "globex", "currency": "USD", "test_clock": clock}, headers=h
    )
    assert {e["id"] for e in client.get("/v1/events/quarantine", headers=h).json()["data"]} == {
        "q1",
        "q2",
        "q3",
    }
    client.post("/v1/subscriptions", json={"customer": "globex", "plan": "payg"}, headers=h)
    client.post("/v1/meters", json={"code": "storage", "aggregation": "count"}, headers=h)
    still = client.get("/v1/events/quarantine", headers=h).json()["data"]
    assert [e["id"] for e in still] == ["q3"]
    released = client.get("/v1/events/quarantine?include_released=true", headers=h).json()["data"]
    assert {e["id"] for e in released if e["released_at"]} == {"q1", "q2"}
    counted = client.get("/v1/events?customer=globex", headers=h).json()["data"]
    assert [e["id"] for e in counted] == ["q1"]


def test_cloudevents(client: TestClient, h: dict[str, str]) -> None:
    one = {
        "specversion": "1.0",
        "id": "ce1",
        "source": "gateway",
        "type": "calls",
        "subject": "acme",
        "time": "2026-01-07T08:00:00Z",
        "data": {"path": "/x"},
    }
    response = client.post(
        "/v1/events", content=_json(one), headers=h | {"content-type": "application/cloudevents+json"}
    )
    assert response.json() == {"id": "ce1", "status": "accepted"}
    batch = [one | {"id": "ce2"}, one | {"id": "ce3", "subscription": "sub_1"}]
    response = client.post(
        "/v1/events", content=_json(batch), headers=h | {"content-type": "application/cloudevents-batch+json"}
    )
    assert response.json()["accepted"] == 2
    bad = client.post(
        "/v1/events",
        content=_json(one | {"specversion": "0.3"}),
        headers=h | {"content-type": "application/cloudevents+json"},
    )
    assert_problem(bad, 422)


def test_ingest_keys_can_only_send(client: TestClient, h: dict[str, str]) -> None:
    key = client.post("/v1/api_keys", json={"name": "gw", "scopes": ["ingest"]}, headers=h).json()["secret"]
    assert client.post("/v1/events", json=_event(50), headers=auth(key)).status_code == 200
    assert_problem(client.get("/v1/events", headers=auth(key)), 403)


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def test_events_list_filters_late_ones(client: TestClient, h: dict[str, str], db: Database) -> None:
    assert client.post("/v1/events", json=[_event(1)], headers=h).json()["accepted"] == 1
    # Billing closes usage up to an instant (invoicing does this); what arrives for before it is late.
    with db.transaction() as conn:
        conn.execute(
            sa.text(
                "update subscriptions set usage_closed_until = '2026-01-10T00:00:00Z' "
                "where external_id = 'sub_1'"
            )
        )
    late = client.post("/v1/events", json=[_event(2, timestamp="2026-01-06T00:00:00Z")], headers=h).json()
    assert late["results"] == [{"id": "e2", "status": "accepted", "late": True}]
    on_time = client.post("/v1/events", json=[_event(3, timestamp="2026-01-11T00:00:00Z")], headers=h).json()
    assert on_time["results"] == [{"id": "e3", "status": "accepted"}]

    def ids(query: str) -> list[str]:
        response = client.get(f"/v1/events?subscription=sub_1{query}", headers=h)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["data"]]

    assert ids("") == ["e3", "e2", "e1"]
    assert ids("&status=late") == ["e2"]
    assert ids("&status=on_time") == ["e3", "e1"]
    assert_problem(client.get("/v1/events?status=lost", headers=h), 422, parameter="status")
