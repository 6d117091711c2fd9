"""The OpenAPI document's `webhooks` section: one entry per event type, its body the envelope."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from accrual.api import billing_schemas
from accrual.api.app import create_app
from accrual.api.event_schemas import DATA_MODELS, TenantData, document_webhooks, envelope
from accrual.domain.events import EVENT_TYPES
from accrual.store.database import Database


@pytest.fixture(scope="module")
def documented(db: Database) -> tuple[dict[str, Any], dict[str, Any]]:
    """The API's OpenAPI document without and with the webhooks (create_app documents them)."""
    bare = create_app(db)
    bare.webhooks.routes.clear()
    plain = bare.openapi()
    assert "webhooks" not in plain
    with TestClient(create_app(db)) as client:
        return plain, client.get("/openapi.json").json()


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def test_every_event_type_has_a_webhook_with_its_description(
    documented: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, spec = documented
    webhooks = spec["webhooks"]
    assert set(webhooks) == set(EVENT_TYPES)
    for name, event_type in EVENT_TYPES.items():
        post = webhooks[name]["post"]
        assert post["description"] == event_type.description
        assert {p["name"] for p in post["parameters"]} == {
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }
        body = _resolve(spec, post["requestBody"]["content"]["application/json"]["schema"])
        assert body["required"] == ["type", "timestamp", "data"]
        assert body["properties"]["type"]["const"] == name
        assert body["properties"]["timestamp"]["format"] == "date-time"
        data = body["properties"]["data"]["$ref"].rsplit("/", 1)[-1]
        assert data == DATA_MODELS[name].__name__


def test_documenting_webhooks_leaves_the_api_schemas_as_they_were(
    documented: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """No event model shares a name with an API model, which would rename both."""
    plain, spec = documented
    assert spec["paths"] == plain["paths"]
    for name, schema in plain["components"]["schemas"].items():
        assert spec["components"]["schemas"][name] == schema


def test_a_bare_app_gets_the_webhooks_too() -> None:
    app = FastAPI()
    document_webhooks(app)
    assert set(app.openapi()["webhooks"]) == set(EVENT_TYPES)


def test_the_envelope_validates_a_standard_webhooks_body() -> None:
    body = {
        "type": "test_clock.created",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "test_clock_id": "01a212aa-b590-701f-b2a3-fa051ff677fd",
            "name": "c",
            "frozen_time": "2026-01-01T00:00:00Z",
        },
    }
    envelope("test_clock.created").model_validate(body)
    with pytest.raises(ValidationError):
        envelope("test_clock.advanced").model_validate(body)


def test_data_models_refuse_fields_they_do_not_document() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TenantData.model_validate({"surprise": 1})


@pytest.mark.parametrize(
    ("event_type", "api_model"),
    [
        ("invoice.finalized", billing_schemas.InvoiceOut),
        ("credit_note.created", billing_schemas.CreditNoteOut),
        ("payment.succeeded", billing_schemas.PaymentOut),
    ],
)
def test_billing_data_has_the_fields_of_the_api_response_but_object(event_type: str, api_model: Any) -> None:
    """The API builds these responses from the same snapshot the events carry."""
    assert set(DATA_MODELS[event_type].model_fields) == set(api_model.model_fields) - {"object"}
