"""What each event's `data` holds, and the OpenAPI `webhooks` section that documents them.

An event's data is the payload its outbox row stores: the entity's state after the change
(`snapshot()` of its view), as JSON. Amounts are decimal strings with exactly the currency's
decimals ("12.30", JPY "1200"), other exact numbers (rates, quantities, discount values)
decimal strings too, instants RFC 3339, ids strings. The API's response models are close to
these but not the same (they add `object`, `created_at` and the like, or name fields
differently), so each event has its own model here; a test checks every model against the
payloads the services really write, and every model forbids fields it does not list.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from accrual.domain.discounts import CouponDuration, CouponKind
from accrual.domain.events import EVENT_TYPES
from accrual.domain.invoices import InvoiceStatus, LineKind
from accrual.domain.meters import Aggregation
from accrual.domain.plans import VersionStatus
from accrual.domain.subscriptions import BillingMode, Status

Amount = Annotated[
    str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", description="Decimal string, the currency's decimals.")
]
Exact = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", description="An exact decimal, as a string.")]
Instant = AwareDatetime


class EventData(BaseModel):
    """The data of an event: exactly the fields listed, nothing more."""

    model_config = ConfigDict(extra="forbid")


# --- tenants, keys, clocks, customers ----------------------------------------------------------


class TenantWebhooksData(EventData):
    allow_insecure: bool = Field(description="Plain-http webhooks to loopback addresses are allowed.")
    allowed_networks: list[str] = Field(description="Private networks (CIDR) webhooks may reach.")


class TenantData(EventData):
    tenant_id: uuid.UUID
    name: str
    timezone: str
    created_at: Instant
    maker_checker: bool
    proration: Literal["day", "second"]
    late_events: Literal["bill_next", "reject"]
    grace_period_days: int
    payment_terms_days: int
    invoice_prefix: str
    credit_note_prefix: str
    zero_amount_invoices: Literal["mark_paid", "leave_open"]
    seller: dict[str, Any] = Field(description="Printed on documents: {name, address, tax_id, email, phone}.")
    webhooks: TenantWebhooksData


class ApiKeyData(EventData):
    api_key_id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the secret, to tell keys apart.")
    scopes: list[Literal["admin", "write", "read", "ingest", "finance"]]
    created_by: str
    revoked_at: Instant | None


class TestClockData(EventData):
    __test__ = False
    test_clock_id: uuid.UUID
    name: str
    frozen_time: Instant


class CustomerData(EventData):
    id: uuid.UUID
    external_id: str
    name: str
    email: str | None
    currency: str
    timezone: str | None = Field(description="Null: the tenant's.")
    billing_address: dict[str, str]
    tax_rates: list[str]
    grace_period_days: int | None = Field(description="Null: the tenant's.")
    payment_method: str | None
    metadata: dict[str, str]
    test_clock: uuid.UUID | None


# --- catalog ------------------------------------------------------------------------------------


class ProductData(EventData):
    id: uuid.UUID
    code: str
    name: str
    description: str | None
    archived_at: Instant | None


class MeterData(EventData):
    id: uuid.UUID
    code: str
    name: str
    aggregation: Aggregation
    field: str | None
    filters: dict[str, list[str]]
    group_by: list[str]
    archived_at: Instant | None


class PlanData(EventData):
    """A plan as `plan.created` announces it."""

    id: uuid.UUID
    code: str
    name: str
    description: str | None
    currency: str
    product: str | None = Field(description="The product's code.")
    archived_at: Instant | None


class PlanChangeData(EventData):
    """A plan's own row as `plan.updated` and `plan.archived` announce it (without its product)."""

    id: uuid.UUID
    code: str
    name: str
    description: str | None
    currency: str
    archived_at: Instant | None


class PlanVersionData(EventData):
    id: uuid.UUID
    plan: str = Field(description="The plan's code.")
    version: int
    status: VersionStatus
    interval: str
    interval_count: int
    trial_days: int
    charges: list[dict[str, Any]] = Field(description="Each charge in the shape it was defined with.")
    tax_rates: list[str]
    submitted_by: str | None
    published_at: Instant | None
    published_by: str | None


class PlanVersionRejectedData(PlanVersionData):
    reason: str = Field(description="The reviewer's reason.")


class CouponRestrictions(EventData):
    plans: list[str]
    charges: list[str]


class CouponData(EventData):
    id: uuid.UUID
    code: str
    name: str
    kind: CouponKind
    value: Exact = Field(description="A percentage, or an amount in `currency`.")
    currency: str | None
    duration: CouponDuration
    periods: int | None
    expires_at: Instant | None
    max_redemptions: int | None
    applies_to: CouponRestrictions
    archived_at: Instant | None


class TaxRateData(EventData):
    id: uuid.UUID
    code: str
    name: str
    rate: Exact = Field(description="A percentage.")
    inclusive: bool
    archived_at: Instant | None


# --- subscriptions ------------------------------------------------------------------------------


class PeriodData(EventData):
    start: Instant
    end: Instant


class SubscriptionData(EventData):
    id: uuid.UUID
    external_id: str | None
    customer: str = Field(description="The customer's external id.")
    plan: str = Field(description="The plan's code.")
    plan_version: int
    status: Status
    quantity: int
    billing: BillingMode
    start: Instant
    trial_end: Instant | None
    current_period: PeriodData | None
    cancel_at_period_end: bool
    canceled_at: Instant | None
    paused_at: Instant | None
    ended_at: Instant | None
    coupon: str | None = Field(description="The coupon's code.")
    metadata: dict[str, str]


class ScheduledChangeData(EventData):
    id: uuid.UUID
    effective_at: Instant
    at_period_end: bool
    plan_version_id: uuid.UUID
    quantity: int
    status: Literal["scheduled", "applied", "canceled"]


class SubscriptionChangeScheduledData(SubscriptionData):
    scheduled_change: ScheduledChangeData


# --- invoices, credit notes, payments ---------------------------------------------------------


class LineTaxData(EventData):
    code: str
    name: str
    rate: Exact
    inclusive: bool
    amount: Exact


class InvoiceLineData(EventData):
    line_no: int
    kind: LineKind
    charge: str | None
    description: str
    period: PeriodData | None
    quantity: Exact
    unit_amount: Exact | None = Field(default=None, description="Absent when the line has no unit price.")
    amount: Amount
    discount: Amount
    tax: Amount
    taxes: list[LineTaxData]


class InvoiceData(EventData):
    id: uuid.UUID
    number: str | None = Field(description="Gap-free per tenant, given at finalization; null for a draft.")
    customer: str = Field(description="The customer's external id.")
    subscription: str | None = Field(description="The subscription's external id (or id when it has none).")
    status: InvoiceStatus
    reason: str = Field(description="What made it: start, boundary, trial_end, change, cancel, end, ...")
    currency: str
    issued_at: Instant
    period: PeriodData | None
    lines: list[InvoiceLineData]
    subtotal: Amount
    discount: Amount
    tax: Amount
    total: Amount = Field(description="subtotal - discount + exclusive tax")
    credit_applied: Amount
    amount_due: Amount = Field(description="total - credit_applied")
    amount_paid: Amount
    amount_credited: Amount
    amount_remaining: Amount = Field(description="amount_due - paid - credited")
    created_at: Instant
    finalize_at: Instant | None = Field(description="When a draft finalizes on its own.")
    finalized_at: Instant | None
    due_at: Instant | None
    paid_at: Instant | None
    voided_at: Instant | None
    uncollectible_at: Instant | None
    memo: str | None


class CreditedLineData(EventData):
    line_no: int
    amount: Exact
    tax: Exact


class CreditNoteData(EventData):
    id: uuid.UUID
    number: str
    invoice: str = Field(description="The invoice's number.")
    customer: str = Field(description="The customer's external id.")
    currency: str
    amount: Amount = Field(description="Credited, tax included.")
    tax: Amount
    to_invoice: Amount = Field(description="Taken off the invoice's amount remaining.")
    to_balance: Amount = Field(description="Added to the customer's credit balance.")
    reason: str
    lines: list[CreditedLineData]
    created_at: Instant


class AccountingPeriodData(EventData):
    month: str = Field(description="YYYY-MM, in the tenant's time zone.")
    status: Literal["closed", "open"]
    changed_at: Instant
    changed_by: str = Field(description="Who closed or reopened it.")
    reason: str | None = Field(description="Why it was reopened.")


class PaymentData(EventData):
    id: uuid.UUID
    customer: str = Field(description="The customer's external id.")
    invoice: str | None = Field(description="The invoice's number.")
    currency: str
    amount: Amount
    method: str
    outcome: Literal["succeeded", "failed"]
    reference: str | None
    failure_reason: str | None
    to_invoice: Amount
    to_balance: Amount = Field(description="An overpayment, kept as the customer's credit.")
    received_at: Instant


# --- usage, webhook endpoints -------------------------------------------------------------------


class QuarantinedUsageData(EventData):
    id: str = Field(description="The event's id, as its sender gave it.")
    meter: str = Field(description="The meter code, as sent.")
    subscription: str | None = Field(description="The subscription named, as sent.")
    customer: str | None = Field(description="The customer's external id, as sent.")
    timestamp: Instant
    properties: dict[str, Any] = Field(description="As sent; numbers with a fraction are decimal strings.")
    reason: Literal[
        "unknown_meter",
        "invalid_value",
        "unknown_subscription",
        "unknown_customer",
        "no_subscription",
        "ambiguous_subscription",
        "before_start",
        "after_end",
    ]
    detail: str
    received_at: Instant


class EndpointData(EventData):
    """A webhook endpoint. Its signing secret is never in an event."""

    endpoint_id: uuid.UUID
    url: str
    description: str
    event_types: list[str] = Field(description="Event types, `<prefix>.*` or `*`; empty: every type.")
    enabled: bool
    disabled_reason: Literal["manual", "gone", "failing"] | None = Field(
        description="Why it is disabled: by hand, the receiver answered 410 Gone, or five days of failures."
    )
    disabled_at: Instant | None
    failing_since: Instant | None = Field(description="Since when every attempt has failed.")
    created_at: Instant
    updated_at: Instant


class EndpointSecretRotatedData(EndpointData):
    previous_secret_expires_at: Instant = Field(description="Until then the previous secret signs too.")


DATA_MODELS: dict[str, type[BaseModel]] = {
    "tenant.created": TenantData,
    "tenant.updated": TenantData,
    "api_key.created": ApiKeyData,
    "api_key.revoked": ApiKeyData,
    "test_clock.created": TestClockData,
    "test_clock.advanced": TestClockData,
    "customer.created": CustomerData,
    "customer.updated": CustomerData,
    "product.created": ProductData,
    "product.updated": ProductData,
    "product.archived": ProductData,
    "meter.created": MeterData,
    "meter.updated": MeterData,
    "meter.archived": MeterData,
    "plan.created": PlanData,
    "plan.updated": PlanChangeData,
    "plan.archived": PlanChangeData,
    "plan_version.created": PlanVersionData,
    "plan_version.updated": PlanVersionData,
    "plan_version.submitted": PlanVersionData,
    "plan_version.published": PlanVersionData,
    "plan_version.rejected": PlanVersionRejectedData,
    "coupon.created": CouponData,
    "coupon.updated": CouponData,
    "coupon.archived": CouponData,
    "tax_rate.created": TaxRateData,
    "tax_rate.updated": TaxRateData,
    "tax_rate.archived": TaxRateData,
    **{
        f"subscription.{action}": SubscriptionData
        for action in (
            "created",
            "trial_started",
            "trial_ended",
            "activated",
            "renewed",
            "plan_changed",
            "quantity_changed",
            "updated",
            "paused",
            "resumed",
            "canceled",
            "uncanceled",
            "ended",
            "past_due",
            "recovered",
        )
    },
    "subscription.change_scheduled": SubscriptionChangeScheduledData,
    "subscription.scheduled_change_canceled": ScheduledChangeData,
    **{
        f"invoice.{action}": InvoiceData
        for action in (
            "created",
            "updated",
            "deleted",
            "finalized",
            "paid",
            "payment_failed",
            "voided",
            "marked_uncollectible",
        )
    },
    "credit_note.created": CreditNoteData,
    "payment.succeeded": PaymentData,
    "payment.failed": PaymentData,
    "usage.quarantined": QuarantinedUsageData,
    "accounting_period.closed": AccountingPeriodData,
    "accounting_period.reopened": AccountingPeriodData,
    **{f"endpoint.{action}": EndpointData for action in ("created", "updated", "enabled", "disabled")},
    "endpoint.secret_rotated": EndpointSecretRotatedData,
}


def _model_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace(".", "_").split("_")) + "Event"


def envelope(event_type: str) -> type[BaseModel]:
    """The Standard Webhooks body of an event of `event_type`: `{type, timestamp, data}`."""
    model: type[BaseModel] = create_model(
        _model_name(event_type),
        __doc__=EVENT_TYPES[event_type].description,
        type=(Literal[event_type], Field(description="The event type.")),  # type: ignore[arg-type]
        timestamp=(dt.datetime, Field(description="When the change happened (RFC 3339).")),
        data=(DATA_MODELS[event_type], Field(description="The entity's state after the change.")),
    )
    return model


_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The event's id: the same on every retry, so receivers deduplicate on it.",
        "schema": {"type": "string"},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "When this attempt was signed, in seconds since the epoch.",
        "schema": {"type": "integer"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": "Standard Webhooks signatures (`v1,<base64 HMAC-SHA256>`), space-separated.",
        "schema": {"type": "string"},
    },
]


def document_webhooks(app: FastAPI) -> None:
    """Add one OpenAPI `webhooks` entry per event type: a POST of the event's envelope."""
    for name, event_type in EVENT_TYPES.items():
        body = envelope(name)

        def receive(event: Any) -> None:
            """Sent to each endpoint whose filters select the type."""

        receive.__annotations__ = {"event": body, "return": None}
        app.webhooks.add_api_route(
            name,
            receive,
            methods=["POST"],
            summary=name,
            description=event_type.description,
            tags=[event_type.prefix],
            operation_id=f"webhook_{name.replace('.', '_')}",
            response_description="Any 2xx acknowledges the event; anything else is retried.",
            openapi_extra={"parameters": _HEADERS},
        )


# --- the catalogue as Markdown (docs/events.md) ----------------------------------------------------


_FORMATS = {"date-time": "instant (RFC 3339)", "uuid": "id (UUID string)"}


def _choices(values: list[Any]) -> str:
    return " \\| ".join(f"`{v}`" for v in values)


def _type_text(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A property's type as a reader wants it: enum values, linked models, `X | null`."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        values = defs.get(name, {}).get("enum")
        text = _choices(values) if values else f"[{name}](#{name.lower()})"
    elif "anyOf" in schema:
        text = " \\| ".join(_type_text(s, defs) for s in schema["anyOf"])
    elif "const" in schema or "enum" in schema:
        text = _choices(schema.get("enum", [schema.get("const")]))
    else:
        kind = schema.get("type", "any")
        text = str(kind)
        if kind == "array":
            text = f"array of {_type_text(schema.get('items', {}), defs)}"
        elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            text = f"object of {_type_text(schema['additionalProperties'], defs)}"
        elif kind == "string" and "format" in schema:
            text = _FORMATS.get(schema["format"], "string")
        elif kind == "string" and "pattern" in schema:
            text = "decimal string"
    return text


def _fields_table(model: type[BaseModel]) -> list[str]:
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema.get("$defs", {})
    required = set(schema.get("required", []))
    lines = ["| field | type | notes |", "|---|---|---|"]
    for name, prop in schema["properties"].items():
        notes = prop.get("description", "")
        if name not in required:
            notes = f"May be absent. {notes}".strip()
        lines.append(f"| `{name}` | {_type_text(prop, defs)} | {notes} |")
    return lines


def catalogue_markdown() -> str:
    """The event types and their data's fields, as docs/events.md shows them."""
    out = ["| type | entity_type | data | description |", "|---|---|---|---|"]
    for name, event_type in EVENT_TYPES.items():
        model = DATA_MODELS[name].__name__
        link = f"[{model}](#{model.lower()})"
        out.append(f"| `{name}` | `{event_type.entity_type}` | {link} | {event_type.description} |")
    models: dict[str, type[BaseModel]] = {}
    for model_type in DATA_MODELS.values():
        models.setdefault(model_type.__name__, model_type)
        for nested in model_type.model_json_schema().get("$defs", {}):
            found = _nested_model(model_type, nested)
            if found is not None:
                models.setdefault(nested, found)
    for title, model_type in models.items():
        out += ["", f"### {title}", ""]
        doc = (model_type.__doc__ or "").strip()
        if doc and not doc.startswith(("The data of an event", "Usage docs:")):
            out += [" ".join(doc.split()), ""]
        out += _fields_table(model_type)
    return "\n".join(out) + "\n"


def _nested_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The model class named `name` used (at any depth) by `model`'s fields, if one is."""
    pending: list[Any] = [f.annotation for f in model.model_fields.values()]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ == name:
                return annotation
            pending += [f.annotation for f in annotation.model_fields.values()]
        pending += list(getattr(annotation, "__args__", ()))
    return None
