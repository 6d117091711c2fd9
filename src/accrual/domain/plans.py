"""Plans: what a subscription buys, on what interval, with which charges.

A plan's code, name and currency belong to the plan; its terms (interval, trial, charges, tax
rates) belong to a version. A draft version may be edited; publishing freezes it forever, and a
change of terms is a new version.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from accrual.domain import codes, money, pricing
from accrual.domain.errors import Conflict, Forbidden
from accrual.domain.periods import BillingInterval, IntervalUnit

_FIELDS = (
    "code",
    "name",
    "description",
    "currency",
    "product",
    "interval",
    "interval_count",
    "trial_days",
    "charges",
    "tax_rates",
)
# The terms: what a version freezes.
TERMS = ("interval", "interval_count", "trial_days", "charges", "tax_rates")
MAX_TRIAL_DAYS = 3650


class VersionStatus(enum.StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"  # published by its maker, awaiting a checker
    PUBLISHED = "published"


class VersionNotEditable(Conflict):
    title = "Plan version is not editable"


class NothingToPublish(Conflict):
    title = "Plan version cannot be published"


class SelfApproval(Forbidden):
    title = "A change cannot be approved by its maker"


@dataclasses.dataclass(frozen=True)
class PlanTerms:
    """What one version of a plan says: billing interval, trial, charges, tax rates."""

    interval: BillingInterval
    trial_days: int
    charges: tuple[pricing.ChargeDefinition, ...]
    tax_rates: tuple[str, ...]

    def to_spec(self) -> dict[str, Any]:
        return {
            "interval": self.interval.unit.value,
            "interval_count": self.interval.count,
            "trial_days": self.trial_days,
            "charges": [charge.to_spec() for charge in self.charges],
            "tax_rates": list(self.tax_rates),
        }


@dataclasses.dataclass(frozen=True)
class PlanDefinition:
    code: str
    name: str
    description: str | None
    currency: money.Currency
    product: str | None
    terms: PlanTerms

    def to_spec(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "description": self.description,
            "currency": self.currency.code,
            "product": self.product,
            **self.terms.to_spec(),
        }


def parse_terms(spec: Mapping[str, object], *, pointer: str) -> PlanTerms:
    """Validate a version's terms: interval (day, week, month, quarter, year), interval_count
    (default 1), trial_days (default 0), charges, tax_rates (codes). Errors name the field."""
    raw_unit = codes.required(spec, "interval", pointer=pointer, what="a plan")
    try:
        unit = IntervalUnit(str(raw_unit))
    except ValueError:
        known = ", ".join(u.value for u in IntervalUnit)
        raise codes.InvalidValue(
            f"unknown interval {raw_unit!r}; known: {known}", field=f"{pointer}/interval"
        ) from None
    count = codes.integer(
        spec.get("interval_count", 1), field=f"{pointer}/interval_count", minimum=1, maximum=120
    )
    trial_days = codes.integer(
        spec.get("trial_days", 0) or 0, field=f"{pointer}/trial_days", minimum=0, maximum=MAX_TRIAL_DAYS
    )
    raw_charges = spec.get("charges") or []
    if not isinstance(raw_charges, list | tuple):
        raise codes.InvalidValue("charges is a list", field=f"{pointer}/charges")
    charges = pricing.parse_charges(raw_charges, pointer=f"{pointer}/charges")
    return PlanTerms(
        interval=BillingInterval(unit=unit, count=count),
        trial_days=trial_days,
        charges=charges,
        tax_rates=codes.code_list(spec.get("tax_rates"), field=f"{pointer}/tax_rates"),
    )


def parse_plan(spec: Mapping[str, object], *, pointer: str) -> PlanDefinition:
    """Validate a plan in the scenario-file shape; errors name the field under `pointer`."""
    codes.only_keys(spec, _FIELDS, pointer=pointer, what="a plan")
    code = codes.code(codes.required(spec, "code", pointer=pointer, what="a plan"), field=f"{pointer}/code")
    raw_currency = codes.required(spec, "currency", pointer=pointer, what="a plan")
    try:
        currency = money.currency(raw_currency)  # type: ignore[arg-type]
    except money.UnknownCurrency as exc:
        raise money.UnknownCurrency(exc.detail, field=f"{pointer}/currency") from None
    description = spec.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 2000):
        raise codes.InvalidValue(
            "a description is text of at most 2000 characters", field=f"{pointer}/description"
        )
    product = spec.get("product")
    return PlanDefinition(
        code=code,
        name=codes.name(spec.get("name"), field=f"{pointer}/name", default=code),
        description=description,
        currency=currency,
        product=codes.code(product, field=f"{pointer}/product") if product is not None else None,
        terms=parse_terms(spec, pointer=pointer),
    )


def check_publishable(terms: PlanTerms, *, plan: str, version: int) -> None:
    """Raise `NothingToPublish` unless the terms charge something."""
    if not terms.charges:
        raise NothingToPublish(f"{plan} version {version} has no charges; add at least one before publishing")
