"""Bodies of the customer and subscription API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from accrual.api.schemas import Request
from accrual.services import customers, subscriptions
from accrual.store import subscriptions as subscription_store


class Address(Request):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = Field(default=None, description="ISO 3166 alpha-2, e.g. FR")


class CustomerCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "external_id": "acme",
                    "name": "Acme Inc.",
                    "email": "billing@acme.test",
                    "currency": "EUR",
                    "timezone": "Europe/Paris",
                    "billing_address": {"line1": "1 rue de Rivoli", "city": "Paris", "country": "FR"},
                    "tax_rates": ["VAT20"],
                }
            ]
        },
    )
    external_id: str = Field(min_length=1, max_length=200, description="Your id for the customer.")
    name: str | None = None
    email: str | None = None
    currency: str = Field(description="ISO 4217; must match the plans it subscribes to.")
    timezone: str | None = Field(default=None, description="IANA zone; default the tenant's.")
    billing_address: Address | None = None
    tax_rates: list[str] | None = None
    grace_period_days: int | None = Field(
        default=None, description="Overrides the tenant's draft grace period."
    )
    payment_method: str | None = Field(
        default=None, description="A reference to the customer's payment method."
    )
    metadata: dict[str, str] | None = None
    test_clock: uuid.UUID | None = Field(
        default=None, description="Put the customer on this test clock, for ever."
    )


class CustomerUpdate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "ap@acme.test", "tax_rates": ["VAT20"]}]}
    )
    name: str | None = None
    email: str | None = None
    currency: str | None = None
    timezone: str | None = None
    billing_address: Address | None = None
    tax_rates: list[str] | None = None
    grace_period_days: int | None = None
    payment_method: str | None = None
    metadata: dict[str, str] | None = None


class CustomerOut(BaseModel):
    object: Literal["customer"] = "customer"
    id: uuid.UUID
    external_id: str
    name: str
    email: str | None
    currency: str
    timezone: str | None
    billing_address: dict[str, str]
    tax_rates: list[str]
    grace_period_days: int | None
    payment_method: str | None
    metadata: dict[str, str]
    test_clock: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, view: customers.CustomerView) -> CustomerOut:
        spec = view.definition.to_spec()
        return cls(
            id=view.customer_id,
            **spec,
            test_clock=view.test_clock_id,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


class SubscriptionCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "external_id": "sub_1",
                    "customer": "acme",
                    "plan": "pro",
                    "billing": "calendar",
                    "coupon": "WELCOME",
                },
                {
                    "customer": "acme",
                    "plan": "seats",
                    "quantity": 5,
                    "start": "2026-02-01T00:00:00Z",
                    "trial_days": 14,
                },
            ]
        },
    )
    external_id: str | None = Field(default=None, description="Your id for the subscription.")
    customer: str | None = Field(
        default=None, description="The customer's external id (or give customer_id)."
    )
    customer_id: uuid.UUID | None = None
    plan: str = Field(description="The plan's code.")
    plan_version: int | None = Field(default=None, description="Default: the newest published version.")
    quantity: int = 1
    billing: Literal["anniversary", "calendar"] = "anniversary"
    start: AwareDatetime | None = Field(
        default=None, description="Default now; future: pending; past: backdated."
    )
    trial_days: int | None = Field(default=None, description="Default: the plan version's.")
    anchor: AwareDatetime | None = Field(default=None, description="Billing anchor (anniversary billing).")
    coupon: str | None = None
    metadata: dict[str, str] | None = None
    trial_end_behavior: Literal["activate", "cancel", "pause"] = Field(
        default="activate", description="At the trial's end without a payment method."
    )


class SubscriptionChange(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"plan": "enterprise", "timing": "immediate"},
                {"quantity": 12},
                {"plan": "pro", "plan_version": 3, "timing": "period_end"},
                {"quantity": 8, "at": "2026-03-15T00:00:00Z"},
            ]
        },
    )
    plan: str | None = None
    plan_version: int | None = Field(default=None, description="Migrate to this version of the plan.")
    quantity: int | None = None
    timing: Literal["immediate", "period_end"] | None = Field(
        default=None, description="Default: immediate for an upgrade, period_end otherwise."
    )
    at: AwareDatetime | None = Field(default=None, description="Apply at this instant instead (scheduled).")


class SubscriptionCancel(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"timing": "period_end"}, {"timing": "immediate"}]}
    )
    timing: Literal["immediate", "period_end"] = "period_end"


class SubscriptionUpdate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"metadata": {"crm_id": "0061x"}}]}
    )
    metadata: dict[str, str] | None = None
    trial_end_behavior: Literal["activate", "cancel", "pause"] | None = None


class PeriodOut(BaseModel):
    start: dt.datetime
    end: dt.datetime


class SubscriptionOut(BaseModel):
    object: Literal["subscription"] = "subscription"
    id: uuid.UUID
    external_id: str | None
    customer: str
    customer_id: uuid.UUID
    plan: str
    plan_version: int
    status: str
    quantity: int
    billing: str
    start: dt.datetime
    trial_end: dt.datetime | None
    current_period: PeriodOut | None
    cancel_at_period_end: bool
    canceled_at: dt.datetime | None
    paused_at: dt.datetime | None
    ended_at: dt.datetime | None
    coupon: str | None
    metadata: dict[str, str]
    trial_end_behavior: str
    next_due_at: dt.datetime | None = Field(description="When its next automatic transition is due.")
    created_at: dt.datetime

    @classmethod
    def of(cls, view: subscriptions.SubscriptionView) -> SubscriptionOut:
        return cls(
            id=view.subscription_id,
            external_id=view.external_id,
            customer=view.customer,
            customer_id=view.customer_id,
            plan=view.plan,
            plan_version=view.plan_version,
            status=view.status.value,
            quantity=view.quantity,
            billing=view.billing.value,
            start=view.start,
            trial_end=view.trial_end,
            current_period=(
                PeriodOut(start=view.current_period.start, end=view.current_period.end)
                if view.current_period
                else None
            ),
            cancel_at_period_end=view.cancel_at_period_end,
            canceled_at=view.canceled_at,
            paused_at=view.paused_at,
            ended_at=view.ended_at,
            coupon=view.coupon,
            metadata=dict(view.metadata),
            trial_end_behavior=view.trial_end_behavior,
            next_due_at=view.next_due_at,
            created_at=view.created_at,
        )


class ScheduledChangeOut(BaseModel):
    object: Literal["scheduled_change"] = "scheduled_change"
    id: uuid.UUID
    effective_at: dt.datetime
    at_period_end: bool
    plan_version_id: uuid.UUID
    quantity: int
    status: str
    created_at: dt.datetime
    created_by: str
    settled_at: dt.datetime | None

    @classmethod
    def of(cls, change: subscription_store.ScheduledChange) -> ScheduledChangeOut:
        return cls(
            id=change.scheduled_change_id,
            effective_at=change.effective_at,
            at_period_end=change.at_period_end,
            plan_version_id=change.plan_version_id,
            quantity=change.quantity,
            status=change.status,
            created_at=change.created_at,
            created_by=change.created_by,
            settled_at=change.settled_at,
        )


class ChangeOut(BaseModel):
    subscription: SubscriptionOut
    scheduled_change: ScheduledChangeOut | None = Field(
        description="Set when the change waits for a later instant."
    )


class TimelineEntryOut(BaseModel):
    seq: int
    action: str
    at: dt.datetime
    from_status: str | None
    to_status: str
    reason: str
    plan_version_id: uuid.UUID
    quantity: int
    period: PeriodOut | None
    actor: str

    @classmethod
    def of(cls, entry: subscriptions.TimelineEntry) -> TimelineEntryOut:
        return cls(
            seq=entry.seq,
            action=entry.action,
            at=entry.at,
            from_status=entry.from_status,
            to_status=entry.to_status,
            reason=entry.reason,
            plan_version_id=entry.plan_version_id,
            quantity=entry.quantity,
            period=PeriodOut(start=entry.period.start, end=entry.period.end) if entry.period else None,
            actor=entry.actor,
        )


class Timeline(BaseModel):
    object: Literal["timeline"] = "timeline"
    subscription: uuid.UUID
    entries: list[TimelineEntryOut]


def dump(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True, mode="python")
