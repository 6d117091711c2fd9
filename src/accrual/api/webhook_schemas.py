"""Bodies of the webhook endpoints, deliveries and outbox API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from accrual.api.schemas import Request
from accrual.services.webhooks import Delivery
from accrual.store.webhooks import Endpoint


class EndpointCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"url": "https://example.com/hooks/accrual", "event_types": ["invoice.*"]}]
        },
    )
    url: str = Field(description="https URL that receives POSTs.")
    event_types: list[str] | None = Field(
        default=None, description="Types (invoice.paid), patterns (invoice.*) or *; none: every type."
    )
    description: str = Field(default="", max_length=500)
    enabled: bool = True


class EndpointUpdate(Request):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"event_types": ["invoice.*", "payment.*"]}, {"enabled": False}]},
    )
    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(default=None, description="false disables the endpoint; true enables it.")


class EndpointOut(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: Literal["manual", "gone", "failing"] | None = Field(
        description="Why it is disabled: by hand, the receiver answered 410 Gone, or five days of failures."
    )
    disabled_at: dt.datetime | None
    failing_since: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, e: Endpoint) -> EndpointOut:
        return cls(
            id=e.endpoint_id,
            url=e.url,
            description=e.description,
            event_types=e.event_types,
            enabled=e.enabled,
            disabled_reason=e.disabled_reason,
            disabled_at=e.disabled_at,
            failing_since=e.failing_since,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The signing secret (whsec_…); also at GET …/secret.")


class SecretRotate(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"overlap_seconds": 3600}]})
    overlap_seconds: int = Field(
        default=86400, ge=0, le=7 * 86400, description="How long the current secret keeps signing too."
    )


class SecretOut(BaseModel):
    object: Literal["webhook_secret"] = "webhook_secret"
    secret: str
    created_at: dt.datetime
    expires_at: dt.datetime | None = Field(description="null: the current secret.")


class SecretsOut(BaseModel):
    object: Literal["webhook_secrets"] = "webhook_secrets"
    data: list[SecretOut] = Field(description="The secrets signing deliveries now, newest first.")


class AttemptOut(BaseModel):
    attempt: int
    attempted_at: dt.datetime
    url: str
    request_headers: dict[str, str]
    status_code: int | None
    response_body: str | None = Field(description="The first 2 KB of the response.")
    latency_ms: int
    error: str | None
    outcome: Literal["succeeded", "failed", "gone"]


class DeliveryOut(BaseModel):
    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID = Field(description="Also the webhook-id header: receivers dedupe on it.")
    event_type: str
    entity_type: str
    entity_id: str
    origin: Literal["relay", "redeliver", "replay"]
    status: Literal["pending", "succeeded", "failed"]
    attempts: list[AttemptOut]
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    completed_at: dt.datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        r = d.row
        return cls(
            id=r.delivery_id,
            endpoint_id=r.endpoint_id,
            event_id=r.event_id,
            event_type=r.event_type,
            entity_type=r.entity_type,
            entity_id=r.entity_id,
            origin=r.origin,
            status=r.status,
            attempts=[
                AttemptOut(
                    attempt=a.attempt,
                    attempted_at=a.attempted_at,
                    url=a.url,
                    request_headers=a.request_headers,
                    status_code=a.status_code,
                    response_body=a.response_body,
                    latency_ms=a.latency_ms,
                    error=a.error,
                    outcome=a.outcome,
                )
                for a in d.attempts
            ],
            next_attempt_at=r.next_attempt_at if r.status == "pending" else None,
            created_at=r.created_at,
            completed_at=r.completed_at,
        )


class DeliveriesMade(BaseModel):
    object: Literal["deliveries_made"] = "deliveries_made"
    deliveries: int = Field(description="How many deliveries were queued.")


class OutboxEventOut(BaseModel):
    object: Literal["event"] = "event"
    id: uuid.UUID
    type: str
    entity_type: str
    entity_id: str
    timestamp: dt.datetime
    data: dict[str, Any]


class OutboxPageOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[OutboxEventOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` next time; kept even when no event came, so polling resumes there."
    )
