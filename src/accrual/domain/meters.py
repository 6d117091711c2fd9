"""Meters: what usage is counted, and how events aggregate into a billable quantity."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from accrual.domain import codes
from accrual.domain.errors import Conflict


class Aggregation(enum.StrEnum):
    COUNT = "count"  # events
    SUM = "sum"  # of the field
    MAX = "max"  # of the field
    UNIQUE_COUNT = "unique_count"  # distinct values of the field
    LATEST = "latest"  # the field of the latest event
    WEIGHTED_SUM = "weighted_sum"  # running total of the field, integrated over time / period length


_FIELDS = ("code", "name", "aggregation", "field", "filters", "group_by")
# What a meter counts. Once an invoice has used a meter, changing these would change what
# old invoices mean; a new meter is made instead.
COUNTING_RULES = ("aggregation", "field", "filters", "group_by")


class MeterInUse(Conflict):
    title = "Meter in use"


@dataclasses.dataclass(frozen=True)
class MeterDefinition:
    """A meter: events of `code` aggregated by `aggregation` over `field`.

    `filters` keep only events whose property equals one of the listed values
    (`{"region": ["eu"]}`); `group_by` splits the quantity by the values of those properties.
    """

    code: str
    name: str
    aggregation: Aggregation
    field: str | None
    filters: tuple[tuple[str, tuple[str, ...]], ...]
    group_by: tuple[str, ...]

    def to_spec(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "aggregation": self.aggregation.value,
            "field": self.field,
            "filters": {prop: list(values) for prop, values in self.filters},
            "group_by": list(self.group_by),
        }

    def counting_rules(self) -> dict[str, Any]:
        spec = self.to_spec()
        return {key: spec[key] for key in COUNTING_RULES}


def _property_name(value: object, *, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 100:
        raise codes.InvalidValue("an event property name must be 1 to 100 characters", field=field)
    return value


def _filters(value: object, *, pointer: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise codes.InvalidValue(
            'filters map event properties to allowed values: {"region": ["eu"]}', field=pointer
        )
    parsed = []
    for prop, allowed in value.items():
        field = f"{pointer}/{prop}"
        _property_name(prop, field=field)
        values = allowed if isinstance(allowed, list | tuple) else [allowed]
        if not values:
            raise codes.InvalidValue("a filter needs at least one allowed value", field=field)
        texts = []
        for i, item in enumerate(values):
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise codes.InvalidValue("filter values are strings or integers", field=f"{field}/{i}")
            texts.append(str(item))
        parsed.append((prop, tuple(sorted(set(texts)))))
    return tuple(sorted(parsed))


def parse_meter(spec: Mapping[str, object], *, pointer: str) -> MeterDefinition:
    """Validate a meter spec `{code, name?, aggregation, field?, filters?, group_by?}`.

    Every aggregation but `count` needs `field`, the event property it aggregates.
    Raises `InvalidInput` errors naming the field under `pointer`.
    """
    codes.only_keys(spec, _FIELDS, pointer=pointer, what="a meter")
    code = codes.code(codes.required(spec, "code", pointer=pointer, what="a meter"), field=f"{pointer}/code")
    raw = codes.required(spec, "aggregation", pointer=pointer, what="a meter")
    try:
        aggregation = Aggregation(str(raw))
    except ValueError:
        known = ", ".join(a.value for a in Aggregation)
        raise codes.InvalidValue(
            f"unknown aggregation {raw!r}; known: {known}", field=f"{pointer}/aggregation"
        ) from None
    field = spec.get("field")
    if field is None and aggregation is not Aggregation.COUNT:
        raise codes.MissingField(
            f"a {aggregation.value} meter needs 'field', the event property it aggregates",
            field=f"{pointer}/field",
        )
    if field is not None:
        field = _property_name(field, field=f"{pointer}/field")
    group_by = spec.get("group_by") or []
    if not isinstance(group_by, list | tuple):
        raise codes.InvalidValue("group_by is a list of event property names", field=f"{pointer}/group_by")
    return MeterDefinition(
        code=code,
        name=codes.name(spec.get("name"), field=f"{pointer}/name", default=code),
        aggregation=aggregation,
        field=field,
        filters=_filters(spec.get("filters"), pointer=f"{pointer}/filters"),
        group_by=tuple(_property_name(g, field=f"{pointer}/group_by/{i}") for i, g in enumerate(group_by)),
    )
