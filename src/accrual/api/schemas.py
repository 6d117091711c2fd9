"""Request and response bodies. Requests refuse unknown fields, so a typo is an error, not a no-op."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from accrual.store.api_keys import ApiKey
from accrual.store.audit import AuditEntry
from accrual.store.pagination import Page
from accrual.store.tenants import Tenant
from accrual.store.test_clocks import TestClock

T = TypeVar("T", bound=BaseModel)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ListOf(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


def list_of(model: type[T], page: Page[Any], convert: Any) -> ListOf[T]:
    return ListOf[model](  # type: ignore[valid-type]
        data=[convert(item) for item in page.items], has_more=page.has_more, next_cursor=page.next_cursor
    )


class WebhookSettings(BaseModel):
    allow_insecure: bool | None = Field(
        default=None, description="Allow plain-http webhooks to loopback addresses (tests, development)."
    )
    allowed_networks: list[str] | None = Field(
        default=None,
        description="Private networks (CIDR) webhooks may reach; other non-public addresses are refused.",
    )


class BillingSettings(BaseModel):
    grace_period_days: int | None = Field(
        default=None, description="Days a draft invoice stays editable before it finalizes (0: at once)."
    )
    payment_terms_days: int | None = Field(default=None, description="Net N: days from finalization to due.")
    invoice_prefix: str | None = Field(default=None, description="Invoice numbers are this and 6 digits.")
    credit_note_prefix: str | None = None
    zero_amount_invoices: Literal["mark_paid", "leave_open"] | None = None
    seller: dict[str, Any] | None = Field(
        default=None, description="Printed on documents: {name, address, tax_id, email, phone}."
    )


class TenantOut(BaseModel):
    object: Literal["tenant"] = "tenant"
    id: uuid.UUID
    name: str
    timezone: str
    maker_checker: bool = Field(description="Publishing a plan version needs a second person's approval.")
    proration: Literal["day", "second"] = Field(description="How partial periods are prorated.")
    late_events: Literal["bill_next", "reject"] = Field(
        description="Usage for an invoiced period: billed on the next invoice, or refused."
    )
    billing: BillingSettings
    webhooks: WebhookSettings
    created_at: dt.datetime

    @classmethod
    def of(cls, tenant: Tenant) -> TenantOut:
        return cls(
            id=tenant.tenant_id,
            name=tenant.name,
            timezone=tenant.timezone,
            maker_checker=tenant.maker_checker,
            proration=tenant.proration,
            late_events=tenant.late_events,
            billing=BillingSettings(
                grace_period_days=tenant.grace_period_days,
                payment_terms_days=tenant.payment_terms_days,
                invoice_prefix=tenant.invoice_prefix,
                credit_note_prefix=tenant.credit_note_prefix,
                zero_amount_invoices=tenant.zero_amount_invoices,
                seller=tenant.seller,
            ),
            webhooks=WebhookSettings(
                allow_insecure=tenant.allow_insecure_webhooks,
                allowed_networks=tenant.webhook_allowed_networks,
            ),
            created_at=tenant.created_at,
        )


class TenantUpdate(Request):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"timezone": "Europe/Paris"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, description="IANA time zone, the default for customers")
    maker_checker: bool | None = Field(
        default=None, description="Require a second person's approval to publish a plan version."
    )
    proration: Literal["day", "second"] | None = Field(
        default=None, description="Prorate partial periods by day (in the customer's time zone) or by second."
    )
    late_events: Literal["bill_next", "reject"] | None = Field(
        default=None, description="Usage for an already invoiced period: bill it next time, or refuse it."
    )
    billing: BillingSettings | None = Field(default=None, description="Invoicing settings.")
    webhooks: WebhookSettings | None = Field(default=None, description="Where webhooks may go.")


class ApiKeyCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"name": "Product usage ingestion", "scopes": ["ingest"]}]},
    )
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Literal["admin", "write", "read", "ingest", "finance"]] = Field(min_length=1)


class ApiKeyOut(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the secret, to tell keys apart.")
    scopes: list[str]
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.api_key_id,
            name=key.name,
            prefix=key.prefix,
            scopes=list(key.scopes),
            created_at=key.created_at,
            created_by=key.created_by,
            revoked_at=key.revoked_at,
        )


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The key itself. It is shown this once and stored only as a hash.")


class TestClockCreate(Request):
    __test__ = False
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"name": "Annual renewal rehearsal", "frozen_time": "2026-01-01T00:00:00Z"}]
        },
    )
    name: str = Field(min_length=1, max_length=200)
    frozen_time: AwareDatetime = Field(description="The instant the clock starts at (RFC 3339 with offset).")


class TestClockAdvance(Request):
    __test__ = False
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"frozen_time": "2026-02-01T00:00:00Z"}]}
    )
    frozen_time: AwareDatetime = Field(description="The instant to advance to; not before the clock's time.")


class TestClockOut(BaseModel):
    __test__ = False
    object: Literal["test_clock"] = "test_clock"
    id: uuid.UUID
    name: str
    frozen_time: dt.datetime
    created_at: dt.datetime

    @classmethod
    def of(cls, clock: TestClock) -> TestClockOut:
        return cls(
            id=clock.test_clock_id,
            name=clock.name,
            frozen_time=clock.frozen_time,
            created_at=clock.created_at,
        )


class AdvanceStepOut(BaseModel):
    provider: str
    at: dt.datetime
    items: int


class TestClockAdvanced(BaseModel):
    __test__ = False
    test_clock: TestClockOut
    steps: list[AdvanceStepOut] = Field(description="The due work the advance ran, in the order it ran.")


class AuditEntryOut(BaseModel):
    object: Literal["audit_entry"] = "audit_entry"
    seq: int
    occurred_at: dt.datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    hash: str = Field(description="Hex SHA-256 of this entry chained to the previous one.")

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            seq=entry.seq,
            occurred_at=entry.occurred_at,
            actor=entry.actor,
            action=entry.action,
            entity_type=entry.entity_type,
            entity_id=entry.entity_id,
            before=dict(entry.before) if entry.before is not None else None,
            after=dict(entry.after) if entry.after is not None else None,
            hash=entry.hash.hex(),
        )


class AuditVerification(BaseModel):
    intact: bool
    records_checked: int
    first_broken_seq: int | None
    reason: str | None
