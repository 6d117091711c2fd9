"""Price models: validated charge definitions, and the rating of a period's usage into money.

A charge says how one part of a plan is priced: a `flat` fee, or a metered price (`per_unit`,
`graduated`, `volume`, `package`, `percentage`) applied to a meter's quantity for the period.
`parse_charge` reads the scenario-file shape of a charge and refuses anything it does not
understand, naming the offending field by its JSON pointer; `to_spec` writes it back.

`rate` (and `rate_events` for percentage prices) turns a quantity into a `Rating`: the charge's
amount for the period and the readable lines it is made of. Every figure is computed exactly,
with `Fraction`; the total is rounded once, half away from zero, to the currency's minor unit,
and the lines are the exact parts of that total, each rounded down or up so that they sum to it
exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import ClassVar, TypeAlias

import babel.numbers

from accrual.domain import codes, money
from accrual.domain.errors import InvalidInput

_WHOLE_PERIOD = Fraction(1)
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


class PriceModelKind(enum.StrEnum):
    FLAT = "flat"
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"
    PERCENTAGE = "percentage"


class ChargeTiming(enum.StrEnum):
    IN_ADVANCE = "in_advance"
    IN_ARREARS = "in_arrears"


# --- errors ------------------------------------------------------------------------------


class UnknownPriceModel(codes.InvalidValue):
    title = "Unknown price model"


class FieldNotAllowed(codes.InvalidValue):
    title = "Field not allowed here"


class NegativeAmount(codes.InvalidValue):
    title = "Amount must not be negative"


class OutOfRange(codes.InvalidValue):
    title = "Value out of range"


class InvalidBounds(codes.InvalidValue):
    title = "Minimum above maximum"


class InvalidTiers(codes.InvalidValue):
    title = "Invalid tiers"


class NoTiers(InvalidTiers):
    title = "No tiers"


class UnorderedTiers(InvalidTiers):
    title = "Tiers out of order"


class UnboundedTierNotLast(InvalidTiers):
    title = "Unbounded tier before the last"


class BoundedLastTier(InvalidTiers):
    title = "Last tier is bounded"


class TierOverlap(InvalidTiers):
    title = "Tiers overlap"


class TierGap(InvalidTiers):
    title = "Gap between tiers"


class InvalidTiming(codes.InvalidValue):
    title = "Invalid charge timing"


class DuplicateCode(codes.InvalidValue):
    title = "Duplicate code"


class CannotRate(InvalidInput):
    title = "Charge cannot be rated"


class NegativeQuantity(CannotRate):
    title = "Negative quantity"


class InvalidProration(CannotRate):
    title = "Invalid proration"


class WrongRatingFunction(CannotRate):
    title = "Wrong rating function for this price model"


# --- reading specs -----------------------------------------------------------------------


def _at(pointer: str, *path: str | int) -> str:
    """Return the JSON pointer (RFC 6901) of `path` under `pointer`, escaping `~` and `/`."""
    return pointer + "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


@contextlib.contextmanager
def _under(pointer: str) -> Iterator[None]:
    """Place the field of an `InvalidInput` raised inside under `pointer`.

    The value classes check themselves when built and name fields relative to themselves
    ("/tiers/1/up_to"); a parser builds them here so that the error names the field in the
    caller's document ("/charges/2/tiers/1/up_to").
    """
    try:
        yield
    except InvalidInput as error:
        error.field = pointer + (error.field or "")
        raise


def _decimal(value: object, *, field: str) -> Decimal:
    """Read an exact decimal (a decimal string, an int or a Decimal), keeping its precision."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise money.InvalidNumber(f"{value!r} is not an exact decimal number", field=field)
    try:
        number = money.parse_decimal(value)
    except money.InvalidNumber as error:
        error.field = field
        raise
    # "-0" is zero; keeping its sign would only make it print oddly.
    return number.copy_abs() if number.is_zero() else number


def _optional_decimal(value: object, *, field: str) -> Decimal | None:
    return None if value is None else _decimal(value, field=field)


def _spec_decimal(value: Decimal) -> str:
    """A decimal as specs hold it: a plain string with the precision it was written with."""
    return format(value, "f")


def _optional_spec_decimal(value: Decimal | None) -> str | None:
    return None if value is None else _spec_decimal(value)


def _name(field: str) -> str:
    return field.lstrip("/") or "value"


def _check_decimal(value: object, *, field: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise codes.InvalidValue(f"{_name(field)} must be a finite Decimal, got {value!r}", field=field)
    return value


def _check_amount(value: object, *, field: str) -> None:
    if _check_decimal(value, field=field) < 0:
        raise NegativeAmount(f"{_name(field)} must be zero or more, got {value}", field=field)


def _check_optional_amount(value: object, *, field: str) -> None:
    if value is not None:
        _check_amount(value, field=field)


def _check_bounds(minimum: Decimal | None, maximum: Decimal | None, *, field: str) -> None:
    if minimum is not None and maximum is not None and minimum > maximum:
        raise InvalidBounds(
            f"{_name(field)} ({maximum}) must not be below the minimum ({minimum})", field=field
        )


# --- price models ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Flat:
    """A fixed fee per period, times the subscription's quantity (seats).

    Raises `NegativeAmount` (field "/amount") for a negative amount.
    """

    kind: ClassVar[PriceModelKind] = PriceModelKind.FLAT
    amount: Decimal

    def __post_init__(self) -> None:
        _check_amount(self.amount, field="/amount")

    def to_spec(self) -> dict[str, object]:
        """The model's parameters as a charge in a scenario file holds them."""
        return {"amount": _spec_decimal(self.amount)}


@dataclasses.dataclass(frozen=True, slots=True)
class PerUnit:
    """One price for every unit: quantity × amount.

    Raises `NegativeAmount` (field "/amount") for a negative amount.
    """

    kind: ClassVar[PriceModelKind] = PriceModelKind.PER_UNIT
    amount: Decimal

    def __post_init__(self) -> None:
        _check_amount(self.amount, field="/amount")

    def to_spec(self) -> dict[str, object]:
        """The model's parameters as a charge in a scenario file holds them."""
        return {"amount": _spec_decimal(self.amount)}


@dataclasses.dataclass(frozen=True, slots=True)
class Tier:
    """One tier of a graduated or volume price: the units up to `up_to` (inclusive; None for
    no bound), priced `unit_amount` each, plus `flat_amount` once when the tier is reached.

    The tier starts where the previous one ends (at 0 for the first). Raises `OutOfRange`
    (field "/up_to") for a bound that is not above zero, `NegativeAmount` for a negative
    amount.
    """

    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal

    def __post_init__(self) -> None:
        if self.up_to is not None and _check_decimal(self.up_to, field="/up_to") <= 0:
            raise OutOfRange(f"up_to must be above zero, got {self.up_to}", field="/up_to")
        _check_amount(self.unit_amount, field="/unit_amount")
        _check_amount(self.flat_amount, field="/flat_amount")

    def to_spec(self) -> dict[str, object]:
        return {
            "up_to": _optional_spec_decimal(self.up_to),
            "unit_amount": _spec_decimal(self.unit_amount),
            "flat_amount": _spec_decimal(self.flat_amount),
        }


def _check_tiers(tiers: object) -> None:
    if not isinstance(tiers, tuple) or not all(isinstance(tier, Tier) for tier in tiers):
        raise codes.InvalidValue(f"tiers must be a tuple of Tier, got {tiers!r}", field="/tiers")
    if not tiers:
        raise NoTiers("a tiered price needs at least one tier", field="/tiers")
    previous: Decimal | None = None
    for i, tier in enumerate(tiers):
        field = f"/tiers/{i}/up_to"
        last = i == len(tiers) - 1
        if tier.up_to is None:
            if not last:
                raise UnboundedTierNotLast(
                    f"tier {i} has no upper bound but is not the last; only the last tier may be unbounded",
                    field=field,
                )
            continue
        if previous is not None and tier.up_to <= previous:
            raise UnorderedTiers(
                f"tier {i} ends at {tier.up_to}, not above the previous tier's end {previous}; "
                "up_to must strictly increase",
                field=field,
            )
        if last:
            raise BoundedLastTier(
                f"the last tier ends at {tier.up_to}; it must have up_to null so every quantity is priced",
                field=field,
            )
        previous = tier.up_to


@dataclasses.dataclass(frozen=True, slots=True)
class Graduated:
    """Tiered pricing where each tier prices the units that fall in it.

    Raises the `InvalidTiers` errors (field "/tiers/N/up_to") unless the bounds strictly
    increase and only the last tier, which must be, is unbounded; `NoTiers` for no tier.
    """

    kind: ClassVar[PriceModelKind] = PriceModelKind.GRADUATED
    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        _check_tiers(self.tiers)

    def to_spec(self) -> dict[str, object]:
        """The model's parameters as a charge in a scenario file holds them."""
        return {"tiers": [tier.to_spec() for tier in self.tiers]}


@dataclasses.dataclass(frozen=True, slots=True)
class Volume:
    """Tiered pricing where the tier containing the whole quantity prices every unit.

    Raises as `Graduated` does.
    """

    kind: ClassVar[PriceModelKind] = PriceModelKind.VOLUME
    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        _check_tiers(self.tiers)

    def to_spec(self) -> dict[str, object]:
        """The model's parameters as a charge in a scenario file holds them."""
        return {"tiers": [tier.to_spec() for tier in self.tiers]}


@dataclasses.dataclass(frozen=True, slots=True)
class Package:
    """Units sold in whole packages: ceil(max(0, q − free_units) / package_size) × package_amount.

    Raises `OutOfRange` for a package size that is not above zero or negative free units,
    `NegativeAmount` for a negative package amount.
    """

    kind: ClassVar[PriceModelKind] = PriceModelKind.PACKAGE
    package_size: Decimal
    package_amount: Decimal
    free_units: Decimal

    def __post_init__(self) -> None:
        if _check_decimal(self.package_size, field="/package_size") <= 0:
            raise OutOfRange(
                f"package_size must be above zero, got {self.package_size}", field="/package_size"
            )
        _check_amount(self.package_amount, field="/package_amount")
        if _check_decimal(self.free_units, field="/free_units") < 0:
            raise OutOfRange(f"free_units must be zero or more, got {self.free_units}", field="/free_units")

    def to_spec(self) -> dict[str, object]:
        """The model's parameters as a charge in a scenario file holds them."""
        return {
            "package_size": _spec_decimal(self.package_size),
            "package_amount": _spec_decimal(self.package_amount),
            "free_units": _spec_decimal(self.free_units),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Percentage:
    """A share of money-valued events: `rate`% of each event's amount plus `fixed_amount`.

    The first `free_events` events, and events while their running total stays within
    `free_amount`, are free; each other event's fee is kept within
    [`event_minimum`, `event_maximum`]. Raises `OutOfRange` for a rate outside 0–100 or a
    negative `free_events`, `NegativeAmount` for a negative amount, `InvalidBounds` (field
    "/event_maximum") when the event minimum is above the event maximum.
    """

    kind: ClassVar[PriceModelKind] = PriceModelKind.PERCENTAGE
    rate: Decimal
    fixed_amount: Decimal
    free_events: int
    free_amount: Decimal | None
    event_minimum: Decimal | None
    event_maximum: Decimal | None

    def __post_init__(self) -> None:
        if not 0 <= _check_decimal(self.rate, field="/rate") <= _HUNDRED:
            raise OutOfRange(f"rate is a percentage from 0 to 100, got {self.rate}", field="/rate")
        _check_amount(self.fixed_amount, field="/fixed_amount")
        codes.integer(self.free_events, field="/free_events", minimum=0)
        _check_optional_amount(self.free_amount, field="/free_amount")
        _check_optional_amount(self.event_minimum, field="/event_minimum")
        _check_optional_amount(self.event_maximum, field="/event_maximum")
        _check_bounds(self.event_minimum, self.event_maximum, field="/event_maximum")

    def to_spec(self) -> dict[str, object]:
        """The model's parameters as a charge in a scenario file holds them."""
        return {
            "rate": _spec_decimal(self.rate),
            "fixed_amount": _spec_decimal(self.fixed_amount),
            "free_events": self.free_events,
            "free_amount": _optional_spec_decimal(self.free_amount),
            "event_minimum": _optional_spec_decimal(self.event_minimum),
            "event_maximum": _optional_spec_decimal(self.event_maximum),
        }


PriceModel: TypeAlias = Flat | PerUnit | Graduated | Volume | Package | Percentage
_MODEL_TYPES = (Flat, PerUnit, Graduated, Volume, Package, Percentage)

# Each model's parameters: those it requires, then those it may have.
_PARAMETERS: dict[PriceModelKind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    PriceModelKind.FLAT: (("amount",), ()),
    PriceModelKind.PER_UNIT: (("amount",), ()),
    PriceModelKind.GRADUATED: (("tiers",), ()),
    PriceModelKind.VOLUME: (("tiers",), ()),
    PriceModelKind.PACKAGE: (("package_size", "package_amount"), ("free_units",)),
    PriceModelKind.PERCENTAGE: (
        ("rate",),
        ("fixed_amount", "free_events", "free_amount", "event_minimum", "event_maximum"),
    ),
}
_ANY_PARAMETER = frozenset(key for required, optional in _PARAMETERS.values() for key in required + optional)
_TIER_FIELDS = ("from", "up_to", "unit_amount", "flat_amount")


def _price_model_kind(kind: object, *, field: str) -> PriceModelKind:
    if isinstance(kind, str):
        with contextlib.suppress(ValueError):
            return PriceModelKind(kind)
    known = ", ".join(k.value for k in PriceModelKind)
    raise UnknownPriceModel(f"{kind!r} is not a price model; known: {known}", field=field)


def _parse_tiers(value: object, *, pointer: str) -> tuple[Tier, ...]:
    field = _at(pointer, "tiers")
    if not isinstance(value, list | tuple):
        raise codes.InvalidValue("tiers must be a list of tiers", field=field)
    tiers: list[Tier] = []
    # Where the tier being read must start: the previous tier's end (0 for the first).
    start: Decimal | None = _ZERO
    for i, raw in enumerate(value):
        tier_pointer = _at(field, i)
        if not isinstance(raw, Mapping):
            raise codes.InvalidValue("a tier must be an object", field=tier_pointer)
        codes.only_keys(raw, _TIER_FIELDS, pointer=tier_pointer, what="a tier")
        if "up_to" not in raw:
            raise codes.MissingField(
                "a tier needs up_to: its last unit, or null for the last tier",
                field=_at(tier_pointer, "up_to"),
            )
        up_to = _optional_decimal(raw["up_to"], field=_at(tier_pointer, "up_to"))
        unit_amount = _decimal(
            codes.required(raw, "unit_amount", pointer=tier_pointer, what="a tier"),
            field=_at(tier_pointer, "unit_amount"),
        )
        flat_amount = _optional_decimal(raw.get("flat_amount"), field=_at(tier_pointer, "flat_amount"))
        declared_start = _optional_decimal(raw.get("from"), field=_at(tier_pointer, "from"))
        # After an unbounded tier there is no start to compare with; building the model
        # refuses the unbounded tier itself.
        if declared_start is not None and start is not None and declared_start != start:
            error = TierOverlap if declared_start < start else TierGap
            what = (
                "overlaps the previous tier"
                if declared_start < start
                else "leaves a gap after the previous tier"
            )
            raise error(
                f"tier {i} starts from {declared_start} but the previous tier ends at {start}: it {what}",
                field=_at(tier_pointer, "from"),
            )
        with _under(tier_pointer):
            tiers.append(
                Tier(
                    up_to=up_to,
                    unit_amount=unit_amount,
                    flat_amount=_ZERO if flat_amount is None else flat_amount,
                )
            )
        start = up_to
    return tuple(tiers)


def parse_price_model(kind: str, params: Mapping[str, object], *, pointer: str) -> PriceModel:
    """Return the price model `kind` ("flat", "per_unit", …) with the parameters `params`.

    `params` holds the model's parameters as a charge in a scenario file does; numbers may
    be decimal strings, ints or Decimals, and keep the precision they were written with; a
    parameter given as null counts as absent. Every error names its field under `pointer`,
    the JSON pointer of the object holding the parameters:

    - `UnknownPriceModel` (pointer + "/model") for an unknown kind;
    - `codes.MissingField` for a required parameter that is absent (amount for flat and
      per_unit; tiers for graduated and volume; package_size and package_amount for
      package; rate for percentage; up_to and unit_amount in a tier);
    - `FieldNotAllowed` for a parameter of another model, `codes.UnknownField` for a key no
      model knows;
    - `money.InvalidNumber` for a value that is not an exact number (floats and booleans
      included), `codes.InvalidValue` for a value of the wrong shape;
    - `NegativeAmount`, `OutOfRange` and `InvalidBounds` for values outside their range;
    - `NoTiers`, `UnorderedTiers`, `UnboundedTierNotLast`, `BoundedLastTier`, and for a
      tier's optional `from`, which must equal the previous tier's `up_to` (0 for the
      first), `TierOverlap` or `TierGap`.
    """
    model_kind = _price_model_kind(kind, field=_at(pointer, "model"))
    if not isinstance(params, Mapping):
        raise codes.InvalidValue("a price model's parameters must be an object", field=pointer or "/")
    required, optional = _PARAMETERS[model_kind]
    for key in params:
        if key not in required and key not in optional:
            if key in _ANY_PARAMETER:
                raise FieldNotAllowed(
                    f"{key} is not a parameter of a {model_kind} price; it takes "
                    f"{', '.join(required + optional)}",
                    field=_at(pointer, key),
                )
            raise codes.UnknownField(
                f"{key!r} is not a parameter of any price model; a {model_kind} price takes "
                f"{', '.join(required + optional)}",
                field=_at(pointer, key),
            )
    values = {key: value for key, value in params.items() if value is not None}
    for key in required:
        if key not in values:
            raise codes.MissingField(f"a {model_kind} price needs {key}", field=_at(pointer, key))

    def number(key: str) -> Decimal:
        return _decimal(values[key], field=_at(pointer, key))

    def optional_number(key: str) -> Decimal | None:
        return _optional_decimal(values.get(key), field=_at(pointer, key))

    def number_or_zero(key: str) -> Decimal:
        value = optional_number(key)
        return _ZERO if value is None else value

    # Values are read first, with errors naming their full pointer; the model is built
    # under `pointer`, so that the rules it checks name their field in the document too.
    model: PriceModel
    if model_kind in {PriceModelKind.FLAT, PriceModelKind.PER_UNIT}:
        amount = number("amount")
        with _under(pointer):
            model = Flat(amount=amount) if model_kind is PriceModelKind.FLAT else PerUnit(amount=amount)
    elif model_kind in {PriceModelKind.GRADUATED, PriceModelKind.VOLUME}:
        tiers = _parse_tiers(values["tiers"], pointer=pointer)
        with _under(pointer):
            model = Graduated(tiers=tiers) if model_kind is PriceModelKind.GRADUATED else Volume(tiers=tiers)
    elif model_kind is PriceModelKind.PACKAGE:
        package_size, package_amount = number("package_size"), number("package_amount")
        free_units = number_or_zero("free_units")
        with _under(pointer):
            model = Package(package_size=package_size, package_amount=package_amount, free_units=free_units)
    else:
        rate = number("rate")
        fixed_amount = number_or_zero("fixed_amount")
        free_events = codes.integer(
            values.get("free_events", 0), field=_at(pointer, "free_events"), minimum=0
        )
        free_amount = optional_number("free_amount")
        event_minimum = optional_number("event_minimum")
        event_maximum = optional_number("event_maximum")
        with _under(pointer):
            model = Percentage(
                rate=rate,
                fixed_amount=fixed_amount,
                free_events=free_events,
                free_amount=free_amount,
                event_minimum=event_minimum,
                event_maximum=event_maximum,
            )
    return model


# --- charges -----------------------------------------------------------------------------

_CHARGE_FIELDS = ("code", "name", "model", "timing", "meter", "minimum", "maximum", "tax_rates")


@dataclasses.dataclass(frozen=True, slots=True)
class ChargeDefinition:
    """One charge of a plan: how it is priced, when it is invoiced, and what it is taxed at.

    A `flat` charge has no meter; every other model prices a meter's quantity, is invoiced
    in arrears, and may carry a `minimum` spend for the period (invoiced as a true-up line)
    and a `maximum` (a cap). Whether the meter and tax rates exist is for the caller to
    check. Raises, with fields relative to the charge: `codes.InvalidCode` for a bad code,
    meter or tax rate code; `codes.InvalidValue` for a bad name or model; `FieldNotAllowed`
    for a meter, minimum or maximum on a flat charge; `codes.MissingField` (field "/meter")
    for a metered charge without a meter; `InvalidTiming` for a metered charge in advance;
    `NegativeAmount`; `InvalidBounds` (field "/maximum") when the minimum is above the
    maximum; `DuplicateCode` for a tax rate listed twice.
    """

    code: str
    name: str
    model: PriceModel
    timing: ChargeTiming
    meter: str | None
    minimum: Decimal | None
    maximum: Decimal | None
    tax_rates: tuple[str, ...]

    def __post_init__(self) -> None:
        codes.code(self.code, field="/code")
        if not isinstance(self.name, str) or not 1 <= len(self.name.strip()) <= 200:
            raise codes.InvalidValue("a name must be 1 to 200 characters", field="/name")
        if not isinstance(self.model, _MODEL_TYPES):
            raise codes.InvalidValue(f"{self.model!r} is not a price model", field="/model")
        if not isinstance(self.timing, ChargeTiming):
            raise InvalidTiming(f"{self.timing!r} is not a charge timing", field="/timing")
        if not self.metered:
            for key, value in (("meter", self.meter), ("minimum", self.minimum), ("maximum", self.maximum)):
                if value is not None:
                    raise FieldNotAllowed(
                        f"a flat charge has no {key}: only metered charges do", field=f"/{key}"
                    )
        else:
            if self.meter is None:
                raise codes.MissingField(
                    f"a {self.model.kind} charge needs the meter it prices", field="/meter"
                )
            codes.code(self.meter, field="/meter")
            if self.timing is ChargeTiming.IN_ADVANCE:
                raise InvalidTiming(
                    "a metered charge is invoiced in arrears: its usage is only known when the period ends",
                    field="/timing",
                )
        _check_optional_amount(self.minimum, field="/minimum")
        _check_optional_amount(self.maximum, field="/maximum")
        _check_bounds(self.minimum, self.maximum, field="/maximum")
        if not isinstance(self.tax_rates, tuple):
            raise codes.InvalidValue("tax_rates must be a tuple of codes", field="/tax_rates")
        for i, tax_rate in enumerate(self.tax_rates):
            codes.code(tax_rate, field=f"/tax_rates/{i}")
            if tax_rate in self.tax_rates[:i]:
                raise DuplicateCode(f"tax rate {tax_rate!r} is listed twice", field=f"/tax_rates/{i}")

    @property
    def metered(self) -> bool:
        """Whether the charge prices a meter's quantity (every model but flat)."""
        return not isinstance(self.model, Flat)

    def to_spec(self) -> dict[str, object]:
        """The charge in the scenario-file shape, every field present, model parameters inline."""
        return {
            "code": self.code,
            "name": self.name,
            "model": self.model.kind.value,
            **self.model.to_spec(),
            "timing": self.timing.value,
            "meter": self.meter,
            "minimum": _optional_spec_decimal(self.minimum),
            "maximum": _optional_spec_decimal(self.maximum),
            "tax_rates": list(self.tax_rates),
        }


def parse_charge(spec: Mapping[str, object], *, pointer: str) -> ChargeDefinition:
    """Return the charge that `spec`, in the scenario-file shape, defines.

    The shape is {code, name?, model, timing?, meter?, minimum?, maximum?, tax_rates?, and
    the model's parameters (see `parse_price_model`)}; null counts as absent. `name`
    defaults to the code; `timing` to in_advance for a flat charge and in_arrears for a
    metered one. Every error names its field under `pointer`, the charge's JSON pointer:
    `codes.InvalidValue` when `spec` is not an object; `codes.MissingField` for a missing
    code or model; `InvalidTiming` for an unknown timing; the errors of `parse_price_model`
    for the model's parameters (a key neither a charge nor its model knows is refused
    there); and the errors `ChargeDefinition` raises for the rules between fields.
    """
    if not isinstance(spec, Mapping):
        raise codes.InvalidValue("a charge must be an object", field=pointer or "/")
    code = codes.code(
        codes.required(spec, "code", pointer=pointer, what="a charge"), field=_at(pointer, "code")
    )
    raw_kind = codes.required(spec, "model", pointer=pointer, what="a charge")
    kind = _price_model_kind(raw_kind, field=_at(pointer, "model"))
    required, optional = _PARAMETERS[kind]
    for key in spec:
        if key not in _CHARGE_FIELDS and key not in _ANY_PARAMETER:
            known = ", ".join(_CHARGE_FIELDS + required + optional)
            raise codes.UnknownField(
                f"a {kind} charge has no field {key!r}; known fields: {known}", field=_at(pointer, key)
            )
    params = {key: value for key, value in spec.items() if key not in _CHARGE_FIELDS}
    model = parse_price_model(kind, params, pointer=pointer)
    name = codes.name(spec.get("name"), field=_at(pointer, "name"), default=code)
    raw_timing = spec.get("timing")
    if raw_timing is None:
        timing = ChargeTiming.IN_ADVANCE if kind is PriceModelKind.FLAT else ChargeTiming.IN_ARREARS
    elif isinstance(raw_timing, str) and raw_timing in set(ChargeTiming):
        timing = ChargeTiming(raw_timing)
    else:
        known = ", ".join(t.value for t in ChargeTiming)
        raise InvalidTiming(
            f"{raw_timing!r} is not a charge timing; known: {known}", field=_at(pointer, "timing")
        )
    raw_meter = spec.get("meter")
    meter = None if raw_meter is None else codes.code(raw_meter, field=_at(pointer, "meter"))
    minimum = _optional_decimal(spec.get("minimum"), field=_at(pointer, "minimum"))
    maximum = _optional_decimal(spec.get("maximum"), field=_at(pointer, "maximum"))
    tax_rates = codes.code_list(spec.get("tax_rates"), field=_at(pointer, "tax_rates"))
    with _under(pointer):
        return ChargeDefinition(
            code=code,
            name=name,
            model=model,
            timing=timing,
            meter=meter,
            minimum=minimum,
            maximum=maximum,
            tax_rates=tax_rates,
        )


def parse_charges(specs: Sequence[Mapping[str, object]], *, pointer: str) -> tuple[ChargeDefinition, ...]:
    """Return the charges of a plan, read by `parse_charge` from the list at `pointer`.

    Raises what `parse_charge` raises, naming "{pointer}/N/…"; `codes.InvalidValue` when
    `specs` is not a list; `DuplicateCode` naming the second charge's "/code" when two
    charges share a code.
    """
    if not isinstance(specs, list | tuple):
        raise codes.InvalidValue("charges must be a list of charges", field=pointer or "/")
    charges: list[ChargeDefinition] = []
    first_with_code: dict[str, int] = {}
    for i, spec in enumerate(specs):
        charge = parse_charge(spec, pointer=_at(pointer, i))
        if charge.code in first_with_code:
            raise DuplicateCode(
                f"charge code {charge.code!r} is already used by charge {first_with_code[charge.code]}",
                field=_at(pointer, i, "code"),
            )
        first_with_code[charge.code] = i
        charges.append(charge)
    return tuple(charges)


# --- rating ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PriceLine:
    """One readable part of a rating, such as "calls 11–20 at $5.00 + $3.00 flat".

    `quantity` is what the line counts (units in a tier, packages, transactions);
    `unit_amount` the price per unit it applies, when it applies one; `amount` its share of
    the rating's amount, with exactly the currency's decimals.
    """

    description: str
    quantity: Decimal
    unit_amount: Decimal | None
    amount: Decimal


@dataclasses.dataclass(frozen=True, slots=True)
class Rating:
    """A charge's amount for one period, and the lines it is made of.

    - `quantity`: the meter's quantity for the period before free units (the sum of the
      event amounts for a percentage price; the subscription's quantity for a flat fee);
      exact, or rounded half away from zero to 10 decimals when it has no finite decimal
      expansion (a weighted sum such as 470/31).
    - `unit_amount`: the price per unit when one price applies to every unit, so that the
      amount before any cap is exactly quantity × unit_amount: a flat fee's amount (then
      also times the proration), a per-unit price's amount, a volume price's tier price
      when that tier has no flat fee, a graduated price's tier price when every tier the
      quantity reaches (the first tier at quantity 0) has that same price and no flat fee,
      a package price's package amount when packages hold one unit, nothing is free and
      the quantity is whole; otherwise None, and always None for a percentage price,
      which is a share of money, not a price per unit.
    - `amount`: computed exactly, rounded once half away from zero to the currency's
      minor unit, then capped at the maximum (`capped` tells whether the cap lowered it).
      It equals the sum of the lines' amounts; a cap is a line of its own, negative.
    - `minimum_true_up`: what the period's minimum spend adds above `amount` (0 when it
      has none or is met); the caller invoices it as a line of its own.
    - `description`: the lines' descriptions joined by "; ".
    """

    quantity: Decimal
    unit_amount: Decimal | None
    amount: Decimal
    lines: tuple[PriceLine, ...]
    description: str
    minimum_true_up: Decimal
    capped: bool


@dataclasses.dataclass(frozen=True, slots=True)
class _Part:
    """A line before rounding: its exact amount, in major units."""

    description: str
    quantity: Fraction
    unit_amount: Decimal | None
    exact: Fraction


def _money_text(amount: Decimal, currency: money.Currency) -> str:
    # By the digits as written, not by value: "5.000" shows as "$5.000", "5" as "$5.00".
    return _formatted_money(str(amount), currency.code)


@functools.lru_cache(maxsize=4096)
def _formatted_money(digits: str, code: str) -> str:
    # Without quantization a price keeps every digit it was written with ("$0.0006") and
    # still shows at least the currency's decimals ("$5.00"). Formatting is slow and a
    # billing run formats the same few prices over and over.
    text: str = babel.numbers.format_currency(
        Decimal(digits), code, locale="en_US", decimal_quantization=False
    )
    return text


def _quantity_text(quantity: Fraction | Decimal | int) -> str:
    """A quantity as a person reads it: thousands separated, exact up to 10 decimals."""
    whole, point, decimals = money.format_quantity(quantity).partition(".")
    return f"{int(whole):,}{point}{decimals}"


def _singular(plural: str) -> str:
    """The singular of an English plural noun, by the common rules ("queries" → "query")."""
    if plural.endswith("ies") and len(plural) > 3:
        return plural[:-3] + "y"
    if plural.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return plural[:-2]
    if plural.endswith("s") and not plural.endswith("ss"):
        return plural[:-1]
    return plural


def _counted(quantity: Fraction | int, label: str) -> str:
    """ "1,000 calls", "1 call", "2.5 GB"."""
    return f"{_quantity_text(quantity)} {_singular(label) if quantity == 1 else label}"


def _proration_text(proration: Fraction) -> str:
    # Day proration reads as the days it counts ("22/31"); a ratio of seconds does not.
    if proration.denominator <= 1000:
        return f"{proration.numerator}/{proration.denominator}"
    return money.format_quantity(proration)


def _as_decimal(quantity: Fraction) -> Decimal:
    """`quantity` as a Decimal: exact when it has a finite decimal expansion, else 10 decimals."""
    if quantity.denominator == 1:
        return Decimal(quantity.numerator)
    candidate = money.CONTEXT.divide(Decimal(quantity.numerator), Decimal(quantity.denominator))
    if Fraction(candidate) == quantity:
        return candidate
    return money.round_quantity(quantity)


def _minor(units: int, currency: money.Currency) -> Decimal:
    return money.Money(minor=units, currency=currency).amount


def _distribute(total: int, exact: Sequence[Fraction]) -> list[int]:
    """Split `total` minor units over parts worth `exact` minor units each, summing to `total`.

    Every part gets its exact value rounded down, then the units left over go one each to
    the parts with the largest fractional remainders (ties to the lower index). When
    `total` is the exact sum of non-negative parts rounded to a whole unit, the left-over
    units number at most the parts with a remainder, so each part ends at its exact value
    rounded down or up, and a part that is already whole keeps its exact value.
    """
    parts = [math.floor(value) for value in exact]
    left_over = total - sum(parts)
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in by_remainder[:left_over]:
        parts[i] += 1
    return parts


def _rating(
    parts: Sequence[_Part],
    *,
    quantity: Decimal,
    unit_amount: Decimal | None,
    currency: money.Currency,
    proration: Fraction,
    minimum: Decimal | None,
    maximum: Decimal | None,
) -> Rating:
    exact_total = sum((part.exact for part in parts), Fraction(0))
    rounded = money.to_minor_units(money.round_half_up_to_minor(exact_total, currency), currency)
    scale: int = 10**currency.exponent
    shares = _distribute(rounded, [part.exact * scale for part in parts])
    lines = [
        PriceLine(
            description=part.description,
            quantity=_as_decimal(part.quantity),
            unit_amount=part.unit_amount,
            amount=_minor(share, currency),
        )
        for part, share in zip(parts, shares, strict=True)
    ]
    amount = rounded
    if maximum is not None:
        cap = money.to_minor_units(
            money.round_half_up_to_minor(Fraction(maximum) * proration, currency), currency
        )
        if rounded > cap:
            amount = cap
            lines.append(
                PriceLine(
                    description=f"capped at {_money_text(_minor(cap, currency), currency)}",
                    quantity=Decimal(1),
                    unit_amount=None,
                    amount=_minor(cap - rounded, currency),
                )
            )
    true_up = 0
    if minimum is not None:
        floor = money.to_minor_units(
            money.round_half_up_to_minor(Fraction(minimum) * proration, currency), currency
        )
        true_up = max(0, floor - amount)
    return Rating(
        quantity=quantity,
        unit_amount=unit_amount,
        amount=_minor(amount, currency),
        lines=tuple(lines),
        description="; ".join(line.description for line in lines),
        minimum_true_up=_minor(true_up, currency),
        capped=amount != rounded,
    )


def _check_quantity(quantity: object) -> tuple[Fraction, Decimal]:
    """The quantity, exactly and as the rating reports it."""
    if isinstance(quantity, bool) or not isinstance(quantity, Decimal | Fraction | int):
        raise money.InvalidNumber(
            f"quantity must be a Decimal, Fraction or int, got {quantity!r}", field="/quantity"
        )
    if isinstance(quantity, Decimal) and not quantity.is_finite():
        raise money.InvalidNumber(f"quantity must be a finite number, got {quantity!r}", field="/quantity")
    if quantity < 0:
        raise NegativeQuantity(f"a quantity to rate cannot be negative, got {quantity}", field="/quantity")
    if isinstance(quantity, Decimal):
        return Fraction(quantity), quantity
    exact = Fraction(quantity)
    return exact, _as_decimal(exact)


def _check_rating_terms(
    *, currency: object, unit_label: object, proration: object, minimum: object, maximum: object
) -> Fraction:
    """Check the arguments every rating takes; return the proration."""
    if not isinstance(currency, money.Currency):
        raise money.UnknownCurrency(f"currency must be a Currency, got {currency!r}", field="/currency")
    if not isinstance(unit_label, str) or not unit_label.strip():
        raise codes.InvalidValue(f"unit_label must be a plural noun, got {unit_label!r}", field="/unit_label")
    if isinstance(proration, bool) or not isinstance(proration, Fraction | int) or not 0 < proration <= 1:
        raise InvalidProration(
            f"proration is the used fraction of a period, above 0 and at most 1, got {proration!r}",
            field="/proration",
        )
    _check_optional_amount(minimum, field="/minimum")
    _check_optional_amount(maximum, field="/maximum")
    if isinstance(minimum, Decimal) and isinstance(maximum, Decimal):
        _check_bounds(minimum, maximum, field="/maximum")
    return Fraction(proration)


def _flat_parts(
    model: Flat, *, quantity: Fraction, proration: Fraction, label: str, currency: money.Currency
) -> list[_Part]:
    description = f"{_counted(quantity, label)} at {_money_text(model.amount, currency)}"
    if proration != 1:
        description += f", prorated {_proration_text(proration)}"
    return [_Part(description, quantity, model.amount, Fraction(model.amount) * quantity * proration)]


def _per_unit_parts(
    model: PerUnit, *, quantity: Fraction, label: str, currency: money.Currency
) -> list[_Part]:
    description = f"{_counted(quantity, label)} at {_money_text(model.amount, currency)}"
    return [_Part(description, quantity, model.amount, Fraction(model.amount) * quantity)]


def _tier_price_text(tier: Tier, currency: money.Currency) -> str:
    text = f"at {_money_text(tier.unit_amount, currency)}"
    if tier.flat_amount:
        text += f" + {_money_text(tier.flat_amount, currency)} flat"
    return text


def _tier_span_text(lower: Fraction, top: Fraction, label: str) -> str:
    """The units of a graduated tier that a quantity reaches: "calls 11–20", "call 11"."""
    if lower.denominator == 1 and top.denominator == 1:
        first = lower + 1
        if first == top:
            return f"{_singular(label)} {_quantity_text(first)}"
        return f"{label} {_quantity_text(first)}–{_quantity_text(top)}"
    if lower == 0:
        return f"first {_quantity_text(top)} {label}"
    return f"{label} above {_quantity_text(lower)} up to {_quantity_text(top)}"


def _single_price(tiers: Sequence[Tier]) -> Decimal | None:
    """The price every unit pays when the tiers reached share one price and no flat fee."""
    first = tiers[0]
    if all(tier.flat_amount == 0 and tier.unit_amount == first.unit_amount for tier in tiers):
        return first.unit_amount
    return None


def _graduated_parts(
    model: Graduated, *, quantity: Fraction, label: str, currency: money.Currency
) -> tuple[list[_Part], Decimal | None]:
    parts: list[_Part] = []
    reached: list[Tier] = []
    lower = Fraction(0)
    for tier in model.tiers:
        # A tier is entered, and its flat amount charged, once the quantity is above its
        # lower bound; `up_to` is inclusive.
        if quantity <= lower:
            break
        top = quantity if tier.up_to is None else min(quantity, Fraction(tier.up_to))
        units = top - lower
        description = f"{_tier_span_text(lower, top, label)} {_tier_price_text(tier, currency)}"
        exact = units * Fraction(tier.unit_amount) + Fraction(tier.flat_amount)
        parts.append(_Part(description, units, tier.unit_amount, exact))
        reached.append(tier)
        if tier.up_to is None:
            break
        lower = Fraction(tier.up_to)
    if not parts:
        return [_Part(_counted(0, label), Fraction(0), None, Fraction(0))], _single_price(model.tiers[:1])
    return parts, _single_price(reached)


def _volume_parts(
    model: Volume, *, quantity: Fraction, label: str, currency: money.Currency
) -> tuple[list[_Part], Decimal | None]:
    # The last tier is unbounded, so some tier always contains the quantity.
    tier = next(t for t in model.tiers if t.up_to is None or quantity <= Fraction(t.up_to))
    description = f"{_counted(quantity, label)} {_tier_price_text(tier, currency)}"
    exact = quantity * Fraction(tier.unit_amount) + Fraction(tier.flat_amount)
    unit_amount = tier.unit_amount if tier.flat_amount == 0 else None
    return [_Part(description, quantity, tier.unit_amount, exact)], unit_amount


def _package_parts(
    model: Package, *, quantity: Fraction, label: str, currency: money.Currency
) -> tuple[list[_Part], Decimal | None]:
    size, free = Fraction(model.package_size), Fraction(model.free_units)
    packages = math.ceil(max(quantity - free, Fraction(0)) / size)
    parts: list[_Part] = []
    free_used = min(quantity, free)
    if free_used > 0:
        parts.append(_Part(_counted(free_used, f"free {label}"), free_used, None, Fraction(0)))
    description = (
        f"{_counted(packages, 'packages')} of {_counted(size, label)} "
        f"at {_money_text(model.package_amount, currency)}"
    )
    parts.append(
        _Part(
            description, Fraction(packages), model.package_amount, packages * Fraction(model.package_amount)
        )
    )
    one_price = size == 1 and free == 0 and quantity.denominator == 1
    return parts, model.package_amount if one_price else None


def rate(
    model: PriceModel,
    *,
    quantity: Decimal | Fraction | int,
    currency: money.Currency,
    unit_label: str,
    proration: Fraction = _WHOLE_PERIOD,
    minimum: Decimal | None = None,
    maximum: Decimal | None = None,
) -> Rating:
    """Rate `quantity` by `model` for one period, in `currency`; see `Rating` for the result.

    For a flat fee `quantity` is the subscription's quantity (seats) and the fee is
    amount × quantity × `proration`; for a usage price it is the meter's quantity for the
    period, which may be fractional, and `proration` only scales `minimum` and `maximum`,
    the period's minimum spend and cap. `unit_label` is the plural noun the descriptions
    count in ("calls"). Prices follow SCENARIOS.md:

    - per_unit: quantity × amount;
    - graduated: each tier prices the units in it, plus its flat amount once the quantity
      is above the tier's lower bound (so quantity 0 costs nothing); `up_to` is inclusive;
    - volume: every unit at the tier containing the quantity (`up_to` inclusive; 0 is in the
      first tier), plus that tier's flat amount;
    - package: ceil(max(0, quantity − free_units) / package_size) × package_amount.

    Raises `WrongRatingFunction` for a percentage price (use `rate_events`);
    `NegativeQuantity`; `InvalidProration` unless 0 < proration ≤ 1; `NegativeAmount` and
    `InvalidBounds` for a negative or inverted minimum and maximum; `money.InvalidNumber`
    for a quantity that is not a finite exact number; `money.UnknownCurrency` when
    `currency` is not a `Currency`; `codes.InvalidValue` for an empty `unit_label`. Fields
    name the offending argument ("/quantity").
    """
    if isinstance(model, Percentage):
        raise WrongRatingFunction(
            "a percentage price rates money-valued events: use rate_events with their amounts", field="/model"
        )
    exact, reported = _check_quantity(quantity)
    period_share = _check_rating_terms(
        currency=currency, unit_label=unit_label, proration=proration, minimum=minimum, maximum=maximum
    )
    unit_amount: Decimal | None
    if isinstance(model, Flat):
        parts = _flat_parts(
            model, quantity=exact, proration=period_share, label=unit_label, currency=currency
        )
        unit_amount = model.amount
    elif isinstance(model, PerUnit):
        parts = _per_unit_parts(model, quantity=exact, label=unit_label, currency=currency)
        unit_amount = model.amount
    elif isinstance(model, Graduated):
        parts, unit_amount = _graduated_parts(model, quantity=exact, label=unit_label, currency=currency)
    elif isinstance(model, Volume):
        parts, unit_amount = _volume_parts(model, quantity=exact, label=unit_label, currency=currency)
    elif isinstance(model, Package):
        parts, unit_amount = _package_parts(model, quantity=exact, label=unit_label, currency=currency)
    else:
        raise codes.InvalidValue(f"{model!r} is not a price model", field="/model")
    return _rating(
        parts,
        quantity=reported,
        unit_amount=unit_amount,
        currency=currency,
        proration=period_share,
        minimum=minimum,
        maximum=maximum,
    )


def _event_amount(value: object, *, field: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise money.InvalidNumber(f"an event amount must be a Decimal or int, got {value!r}", field=field)
    if isinstance(value, Decimal) and not value.is_finite():
        raise money.InvalidNumber(f"an event amount must be a finite number, got {value!r}", field=field)
    if value < 0:
        raise NegativeAmount(f"an event amount cannot be negative, got {value}", field=field)
    return Fraction(value)


@dataclasses.dataclass(slots=True)
class _EventTally:
    """How a period's events were charged: free, paying the rate, or held at a bound."""

    free: int = 0
    paying: int = 0
    paying_base: Fraction = Fraction(0)
    at_minimum: int = 0
    at_maximum: int = 0


def _tally_events(model: Percentage, values: Sequence[Fraction]) -> _EventTally:
    share = Fraction(model.rate) / 100
    low = None if model.event_minimum is None else Fraction(model.event_minimum)
    high = None if model.event_maximum is None else Fraction(model.event_maximum)
    allowance = None if model.free_amount is None else Fraction(model.free_amount)
    tally = _EventTally()
    free_run = model.free_events > 0 or allowance is not None
    running = Fraction(0)
    for i, value in enumerate(values):
        chargeable = value
        if model.free_events > 0 and i >= model.free_events:
            free_run = False
        if free_run:
            if allowance is None or running + value <= allowance:
                running += value
                tally.free += 1
                continue
            chargeable = running + value - allowance
            free_run = False
        fee = share * chargeable + Fraction(model.fixed_amount)
        if low is not None and fee < low:
            tally.at_minimum += 1
        elif high is not None and fee > high:
            tally.at_maximum += 1
        else:
            tally.paying += 1
            tally.paying_base += chargeable
    return tally


def _event_parts(
    model: Percentage, tally: _EventTally, *, label: str, currency: money.Currency
) -> list[_Part]:
    parts: list[_Part] = []
    if tally.free:
        description = _counted(tally.free, f"free {label}")
        if model.free_amount is not None:
            description += f" within the first {_money_text(model.free_amount, currency)}"
        parts.append(_Part(description, Fraction(tally.free), None, Fraction(0)))
    if tally.paying:
        description = (
            f"{_counted(tally.paying, label)}: {money.format_quantity(model.rate)}% "
            f"of {_money_text(_as_decimal(tally.paying_base), currency)}"
        )
        if model.fixed_amount:
            description += f" + {_money_text(model.fixed_amount, currency)} each"
        exact = Fraction(model.rate) / 100 * tally.paying_base + Fraction(model.fixed_amount) * tally.paying
        parts.append(_Part(description, Fraction(tally.paying), None, exact))
    for count, bound, which in (
        (tally.at_minimum, model.event_minimum, "minimum"),
        (tally.at_maximum, model.event_maximum, "maximum"),
    ):
        if count and bound is not None:
            description = f"{_counted(count, label)} at the {_money_text(bound, currency)} {which} fee"
            parts.append(_Part(description, Fraction(count), bound, count * Fraction(bound)))
    if not parts:
        parts.append(_Part(_counted(0, label), Fraction(0), None, Fraction(0)))
    return parts


def rate_events(
    model: Percentage,
    *,
    amounts: Sequence[Decimal],
    currency: money.Currency,
    unit_label: str,
    minimum: Decimal | None = None,
    maximum: Decimal | None = None,
    proration: Fraction = _WHOLE_PERIOD,
) -> Rating:
    """Rate a period's money-valued events by a percentage price; see `Rating` for the result.

    `amounts` are the events' amounts in time order. Each event pays `rate`% of its amount
    plus `fixed_amount`, except free ones:

    - the first `free_events` events are free (0 means no such allowance);
    - with `free_amount` set, events are free while the running total of their amounts
      stays within it; the event that crosses it pays on the part above it (the rate on
      that part, plus the whole fixed amount), and every later event pays in full;
    - with both set, an event is free only while both allowances last, so the free run
      ends at whichever is reached first.

    An event that pays has its fee raised to `event_minimum` and lowered to
    `event_maximum` when they are set. The fees are summed exactly and rounded once. The
    rating's quantity is the sum of the amounts (the meter's sum); its lines count
    transactions: the free ones, those that pay the rate, those held at the per-event
    minimum and at the maximum. `proration` only scales `minimum` and `maximum`.

    Raises `WrongRatingFunction` for a model that is not a percentage (use `rate`);
    `NegativeAmount` (field "/amounts/N") for a negative event amount, `money.InvalidNumber`
    for one that is not a finite Decimal or int; otherwise as `rate`.
    """
    if not isinstance(model, Percentage):
        raise WrongRatingFunction(f"a {model.kind} price rates a quantity: use rate", field="/model")
    values = [_event_amount(value, field=f"/amounts/{i}") for i, value in enumerate(amounts)]
    period_share = _check_rating_terms(
        currency=currency, unit_label=unit_label, proration=proration, minimum=minimum, maximum=maximum
    )
    parts = _event_parts(model, _tally_events(model, values), label=unit_label, currency=currency)
    return _rating(
        parts,
        quantity=_as_decimal(sum(values, Fraction(0))),
        unit_amount=None,
        currency=currency,
        proration=period_share,
        minimum=minimum,
        maximum=maximum,
    )
