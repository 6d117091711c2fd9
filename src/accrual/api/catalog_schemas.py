"""Bodies of the catalog API: the same shapes as a scenario file's `catalog:` section.

Amounts and quantities are exact decimals: send them as strings ("0.0006") or integers; a
JSON number with a fraction is refused rather than read through a binary float.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from accrual.api.schemas import Request
from accrual.services import catalog


def _exact(value: object) -> object:
    if isinstance(value, float):
        raise ValueError(f'amounts are exact: send {value!r} as a decimal string, e.g. "{value}"')
    if isinstance(value, bool):
        raise ValueError("expected a decimal string or an integer")
    return value


Decimal = Annotated[
    str | int,
    BeforeValidator(_exact),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["0.05"]}),
]
Code = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class Tier(Request):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    up_to: Decimal | None = Field(description="Inclusive upper bound; null for the last tier.")
    unit_amount: Decimal
    flat_amount: Decimal | None = None
    from_: Decimal | None = Field(
        default=None, alias="from", description="Optional lower bound: must equal the previous tier's up_to."
    )


class Charge(Request):
    """One charge of a plan version; which parameters apply depends on `model`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"code": "base", "model": "flat", "amount": "50.00", "timing": "in_advance"},
                {
                    "code": "calls",
                    "meter": "api_calls",
                    "model": "graduated",
                    "tiers": [
                        {"up_to": "10", "unit_amount": "10", "flat_amount": "2"},
                        {"up_to": None, "unit_amount": "5", "flat_amount": "3"},
                    ],
                },
            ]
        },
    )
    code: Code
    name: str | None = None
    model: Literal["flat", "per_unit", "graduated", "volume", "package", "percentage"]
    timing: Literal["in_advance", "in_arrears"] | None = Field(
        default=None, description="Default: in_advance for flat charges, in_arrears for metered ones."
    )
    meter: Code | None = Field(
        default=None, description="The meter of a metered charge (every model but flat)."
    )
    amount: Decimal | None = Field(
        default=None, description="flat: the fee per period; per_unit: the unit price."
    )
    tiers: list[Tier] | None = None
    package_size: Decimal | None = None
    package_amount: Decimal | None = None
    free_units: Decimal | None = None
    rate: Decimal | None = Field(default=None, description="percentage: percent of each event's amount.")
    fixed_amount: Decimal | None = None
    free_events: int | None = None
    free_amount: Decimal | None = None
    event_minimum: Decimal | None = None
    event_maximum: Decimal | None = None
    minimum: Decimal | None = Field(default=None, description="Minimum spend per period (a true-up line).")
    maximum: Decimal | None = Field(default=None, description="Cap per period.")
    tax_rates: list[Code] | None = None


class PlanTerms(Request):
    """The terms a plan version freezes."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "interval": "month",
                    "charges": [{"code": "base", "model": "flat", "amount": "60.00"}],
                }
            ]
        },
    )
    interval: Literal["day", "week", "month", "quarter", "year"]
    interval_count: int = 1
    trial_days: int = 0
    charges: list[Charge] = Field(default_factory=list)
    tax_rates: list[Code] | None = None


class PlanCreate(PlanTerms):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "pro",
                    "name": "Pro",
                    "currency": "USD",
                    "interval": "month",
                    "charges": [
                        {"code": "base", "model": "flat", "amount": "50.00"},
                        {"code": "calls", "meter": "api_calls", "model": "per_unit", "amount": "0.05"},
                    ],
                    "publish": True,
                }
            ]
        },
    )
    code: Code
    name: str | None = None
    description: str | None = None
    currency: str = Field(description="ISO 4217 code; never changes.")
    product: Code | None = None
    publish: bool = Field(
        default=False, description="Publish version 1 at once instead of leaving it a draft."
    )


class PlanUpdate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Pro (2026)", "description": "For growing teams"}]},
    )
    name: str | None = None
    description: str | None = None


class DraftCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {},
                {
                    "terms": {
                        "interval": "month",
                        "charges": [{"code": "base", "model": "flat", "amount": "60"}],
                    }
                },
            ]
        },
    )
    terms: PlanTerms | None = Field(default=None, description="Omit to copy the newest version's terms.")


class Rejection(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "base fee below list price"}]}
    )
    reason: str = Field(min_length=1, max_length=200)


class MeterCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"code": "api_calls", "aggregation": "count"},
                {
                    "code": "storage_gb",
                    "aggregation": "weighted_sum",
                    "field": "gb",
                    "filters": {"region": ["eu"]},
                },
            ]
        },
    )
    code: Code
    name: str | None = None
    aggregation: Literal["count", "sum", "max", "unique_count", "latest", "weighted_sum"]
    field: str | None = Field(default=None, description="The event property aggregated (all but count).")
    filters: dict[str, list[str | int] | str | int] | None = Field(
        default=None, description="Count only events whose property has one of these values."
    )
    group_by: list[str] | None = None


class MeterUpdate(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "API calls"}]})
    name: str | None = None
    aggregation: Literal["count", "sum", "max", "unique_count", "latest", "weighted_sum"] | None = None
    field: str | None = None
    filters: dict[str, list[str | int] | str | int] | None = None
    group_by: list[str] | None = None


class ProductCreate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"code": "api", "name": "API"}]}
    )
    code: Code
    name: str | None = None
    description: str | None = None


class NameUpdate(Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "Launch discount"}]})
    name: str | None = None
    description: str | None = None


class CouponCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"code": "WELCOME", "kind": "percentage", "value": "10", "duration": "once"},
                {
                    "code": "TEN",
                    "kind": "fixed",
                    "value": "10",
                    "currency": "USD",
                    "duration": "repeating",
                    "periods": 3,
                },
            ]
        },
    )
    code: Code
    name: str | None = None
    kind: Literal["percentage", "fixed"]
    value: Decimal
    currency: str | None = None
    duration: Literal["once", "repeating", "forever"]
    periods: int | None = None
    expires_at: dt.datetime | None = None
    max_redemptions: int | None = None
    applies_to: dict[Literal["plans", "charges"], list[Code]] | None = None


class TaxRateCreate(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"code": "VAT20", "name": "VAT 20%", "rate": "20"}]}
    )
    code: Code
    name: str | None = None
    rate: Decimal
    inclusive: bool = False


class CatalogDocument(Request):
    """A scenario file's `catalog:` section, as JSON."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "meters": [{"code": "api_calls", "aggregation": "count"}],
                    "plans": [
                        {
                            "code": "payg",
                            "currency": "USD",
                            "interval": "month",
                            "charges": [
                                {"code": "calls", "meter": "api_calls", "model": "per_unit", "amount": "0.05"}
                            ],
                        }
                    ],
                    "taxes": [{"code": "VAT20", "rate": "20"}],
                }
            ]
        },
    )
    meters: list[dict[str, Any]] | None = None
    taxes: list[dict[str, Any]] | None = None
    products: list[dict[str, Any]] | None = None
    plans: list[dict[str, Any]] | None = None
    coupons: list[dict[str, Any]] | None = None


# --- responses ---------------------------------------------------------------------------------


class ProductOut(BaseModel):
    object: Literal["product"] = "product"
    id: uuid.UUID
    code: str
    name: str
    description: str | None
    created_at: dt.datetime
    archived_at: dt.datetime | None

    @classmethod
    def of(cls, view: catalog.ProductView) -> ProductOut:
        return cls(
            id=view.product_id,
            code=view.code,
            name=view.name,
            description=view.description,
            created_at=view.created_at,
            archived_at=view.archived_at,
        )


class MeterOut(BaseModel):
    object: Literal["meter"] = "meter"
    id: uuid.UUID
    code: str
    name: str
    aggregation: str
    field: str | None
    filters: dict[str, list[str]]
    group_by: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime
    archived_at: dt.datetime | None

    @classmethod
    def of(cls, view: catalog.MeterView) -> MeterOut:
        spec = view.definition.to_spec()
        return cls(
            id=view.meter_id,
            code=spec["code"],
            name=spec["name"],
            aggregation=spec["aggregation"],
            field=spec["field"],
            filters=spec["filters"],
            group_by=spec["group_by"],
            created_at=view.created_at,
            updated_at=view.updated_at,
            archived_at=view.archived_at,
        )


class PlanVersionOut(BaseModel):
    object: Literal["plan_version"] = "plan_version"
    id: uuid.UUID
    plan: str
    version: int
    status: Literal["draft", "pending_approval", "published"]
    interval: str
    interval_count: int
    trial_days: int
    charges: list[dict[str, Any]] = Field(description="Each charge in the shape it was defined with.")
    tax_rates: list[str]
    created_at: dt.datetime
    created_by: str
    submitted_by: str | None
    published_at: dt.datetime | None
    published_by: str | None

    @classmethod
    def of(cls, view: catalog.VersionView) -> PlanVersionOut:
        row = view.row
        return cls(
            id=row.plan_version_id,
            plan=view.plan_code,
            version=row.version,
            status=view.status.value,
            interval=row.interval_unit,
            interval_count=row.interval_count,
            trial_days=row.trial_days,
            charges=[dict(c.spec) for c in row.charges],
            tax_rates=list(row.tax_rates),
            created_at=row.created_at,
            created_by=row.created_by,
            submitted_by=row.submitted_by,
            published_at=row.published_at,
            published_by=row.published_by,
        )


class PlanOut(BaseModel):
    object: Literal["plan"] = "plan"
    id: uuid.UUID
    code: str
    name: str
    description: str | None
    currency: str
    product: str | None
    created_at: dt.datetime
    archived_at: dt.datetime | None
    current_version: PlanVersionOut | None = Field(description="The newest published version.")
    open_version: PlanVersionOut | None = Field(description="The draft, or the version awaiting approval.")
    versions: list[int]

    @classmethod
    def of(cls, view: catalog.PlanView) -> PlanOut:
        return cls(
            id=view.plan_id,
            code=view.code,
            name=view.name,
            description=view.description,
            currency=view.currency,
            product=view.product,
            created_at=view.created_at,
            archived_at=view.archived_at,
            current_version=PlanVersionOut.of(view.current) if view.current else None,
            open_version=PlanVersionOut.of(view.open_version) if view.open_version else None,
            versions=[v.row.version for v in view.versions],
        )


class CouponOut(BaseModel):
    object: Literal["coupon"] = "coupon"
    id: uuid.UUID
    code: str
    name: str
    terms: dict[str, Any] = Field(
        description="kind, value, currency, duration, periods, expiry, limits, restrictions"
    )
    created_at: dt.datetime
    archived_at: dt.datetime | None

    @classmethod
    def of(cls, view: catalog.CouponView) -> CouponOut:
        spec = view.coupon.to_spec()
        return cls(
            id=view.coupon_id,
            code=view.coupon.code,
            name=view.coupon.name,
            terms={k: v for k, v in spec.items() if k not in ("code", "name")},
            created_at=view.created_at,
            archived_at=view.archived_at,
        )


class TaxRateOut(BaseModel):
    object: Literal["tax_rate"] = "tax_rate"
    id: uuid.UUID
    code: str
    name: str
    rate: str
    inclusive: bool
    created_at: dt.datetime
    archived_at: dt.datetime | None

    @classmethod
    def of(cls, view: catalog.TaxRateView) -> TaxRateOut:
        return cls(
            id=view.tax_rate_id,
            code=view.tax_rate.code,
            name=view.tax_rate.name,
            rate=str(view.tax_rate.rate),
            inclusive=view.tax_rate.inclusive,
            created_at=view.created_at,
            archived_at=view.archived_at,
        )


class AppliedOut(BaseModel):
    kind: str
    code: str
    outcome: str


class CatalogApplied(BaseModel):
    object: Literal["catalog_apply"] = "catalog_apply"
    results: list[AppliedOut]
    changed: bool
