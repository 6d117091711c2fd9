"""Customers: who is billed, in which currency and time zone, at which address and tax rates."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from accrual.domain import codes, money, timezones

_FIELDS = (
    "external_id",
    "name",
    "email",
    "currency",
    "timezone",
    "billing_address",
    "tax_rates",
    "grace_period_days",
    "payment_method",
    "metadata",
)
UPDATABLE = tuple(f for f in _FIELDS if f != "external_id")
ADDRESS_FIELDS = ("line1", "line2", "city", "postal_code", "state", "country")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclasses.dataclass(frozen=True)
class CustomerDefinition:
    external_id: str
    name: str
    email: str | None
    currency: money.Currency
    timezone: str | None  # None: the tenant's
    billing_address: Mapping[str, str]
    tax_rates: tuple[str, ...]
    grace_period_days: int | None  # None: the tenant's
    payment_method: str | None
    metadata: Mapping[str, str]

    def to_spec(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "name": self.name,
            "email": self.email,
            "currency": self.currency.code,
            "timezone": self.timezone,
            "billing_address": dict(self.billing_address),
            "tax_rates": list(self.tax_rates),
            "grace_period_days": self.grace_period_days,
            "payment_method": self.payment_method,
            "metadata": dict(self.metadata),
        }


def _text(value: object, *, field: str, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= limit:
        raise codes.InvalidValue(f"expected text of 1 to {limit} characters", field=field)
    return value.strip()


def _address(value: object, *, pointer: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise codes.InvalidValue("an address is an object", field=pointer)
    codes.only_keys(value, ADDRESS_FIELDS, pointer=pointer, what="an address")
    address = {
        key: _text(item, field=f"{pointer}/{key}", limit=200)
        for key, item in value.items()
        if item is not None
    }
    country = address.get("country")
    if country is not None and not _COUNTRY.fullmatch(country):
        raise codes.InvalidValue("country is an ISO 3166 alpha-2 code such as FR", field=f"{pointer}/country")
    return address


def _metadata(value: object, *, pointer: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > 50:
        raise codes.InvalidValue("metadata is an object of at most 50 string values", field=pointer)
    result = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 40:
            raise codes.InvalidValue("metadata keys are 1 to 40 characters", field=f"{pointer}/{key}")
        if not isinstance(item, str) or len(item) > 500:
            raise codes.InvalidValue(
                "metadata values are text of at most 500 characters", field=f"{pointer}/{key}"
            )
        result[key] = item
    return result


def parse_customer(spec: Mapping[str, object], *, pointer: str) -> CustomerDefinition:
    """Validate a customer; errors name the field under `pointer`."""
    codes.only_keys(spec, _FIELDS, pointer=pointer, what="a customer")
    external_id = _text(
        codes.required(spec, "external_id", pointer=pointer, what="a customer"),
        field=f"{pointer}/external_id",
        limit=200,
    )
    raw_currency = codes.required(spec, "currency", pointer=pointer, what="a customer")
    try:
        currency = money.currency(str(raw_currency))
    except money.UnknownCurrency as exc:
        raise money.UnknownCurrency(exc.detail, field=f"{pointer}/currency") from None
    email = spec.get("email")
    if email is not None and (not isinstance(email, str) or not _EMAIL.fullmatch(email) or len(email) > 320):
        raise codes.InvalidValue(f"{email!r} is not an email address", field=f"{pointer}/email")
    timezone = spec.get("timezone")
    if timezone is not None:
        timezones.zone(str(timezone), field=f"{pointer}/timezone")
    grace = spec.get("grace_period_days")
    payment_method = spec.get("payment_method")
    return CustomerDefinition(
        external_id=external_id,
        name=codes.name(spec.get("name"), field=f"{pointer}/name", default=external_id),
        email=email,
        currency=currency,
        timezone=str(timezone) if timezone is not None else None,
        billing_address=_address(spec.get("billing_address"), pointer=f"{pointer}/billing_address"),
        tax_rates=codes.code_list(spec.get("tax_rates"), field=f"{pointer}/tax_rates"),
        grace_period_days=(
            codes.integer(grace, field=f"{pointer}/grace_period_days", minimum=0, maximum=365)
            if grace is not None
            else None
        ),
        payment_method=(
            _text(payment_method, field=f"{pointer}/payment_method", limit=200)
            if payment_method is not None
            else None
        ),
        metadata=_metadata(spec.get("metadata"), pointer=f"{pointer}/metadata"),
    )
