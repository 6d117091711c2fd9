"""Coupons, and how a coupon's discount is shared among the lines of an invoice.

A coupon takes a percentage or a fixed amount off the lines it applies to, for one billing
period (`once`), a number of them (`repeating`) or all of them (`forever`). Its discount is
computed once for the invoice, rounded half away from zero, and allocated to the eligible
lines in proportion to their amounts by largest remainder, before tax, so that the lines'
discounts sum exactly to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

from accrual.domain import codes, money
from accrual.domain.clock import require_aware
from accrual.domain.errors import InvalidInput

_FIELDS = (
    "code",
    "name",
    "kind",
    "value",
    "currency",
    "duration",
    "periods",
    "expires_at",
    "max_redemptions",
    "applies_to",
)
_APPLIES_TO_FIELDS = ("plans", "charges")
_HUNDRED = Decimal(100)
# RFC 3339 with a required offset; at most microseconds, the resolution of datetime, so that
# no digit is dropped silently.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[Zz]|[+-]\d{2}:\d{2})")


class CouponKind(enum.StrEnum):
    PERCENTAGE = "percentage"
    FIXED = "fixed"


class CouponDuration(enum.StrEnum):
    ONCE = "once"
    REPEATING = "repeating"
    FOREVER = "forever"


class InvalidCouponValue(codes.InvalidValue):
    title = "Invalid coupon value"


class InvalidExpiry(codes.InvalidValue):
    title = "Invalid coupon expiry"


class MismatchedLines(InvalidInput):
    title = "Line amounts and eligibility do not match"


@contextlib.contextmanager
def _under(pointer: str) -> Iterator[None]:
    """Place the field of an `InvalidInput` raised inside under `pointer`."""
    try:
        yield
    except InvalidInput as error:
        error.field = pointer + (error.field or "")
        raise


def _decimal(value: object, *, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise money.InvalidNumber(f"{value!r} is not an exact decimal number", field=field)
    try:
        return money.parse_decimal(value)
    except money.InvalidNumber as error:
        error.field = field
        raise


def _rfc3339(instant: dt.datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def _aware(value: object, *, field: str) -> dt.datetime:
    if isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            raise InvalidExpiry(
                f"{value!r} is not an RFC 3339 timestamp with an offset, such as 2026-01-01T00:00:00Z",
                field=field,
            )
        try:
            value = dt.datetime.fromisoformat(value.upper())
        except ValueError:
            raise InvalidExpiry(f"{value!r} is not a valid date and time", field=field) from None
    if not isinstance(value, dt.datetime):
        raise InvalidExpiry(f"expires_at must be a timestamp, got {value!r}", field=field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidExpiry(f"{value.isoformat()} has no UTC offset; say which instant it is", field=field)
    return value.astimezone(dt.UTC)


def _check_codes(values: object, *, field: str) -> None:
    if not isinstance(values, tuple):
        raise codes.InvalidValue(f"expected a tuple of codes, got {values!r}", field=field)
    for i, value in enumerate(values):
        codes.code(value, field=f"{field}/{i}")
        if value in values[:i]:
            raise codes.InvalidValue(f"{value!r} is listed twice", field=f"{field}/{i}")


@dataclasses.dataclass(frozen=True, slots=True)
class Coupon:
    """A discount a subscription can redeem: a percentage or a fixed amount off its lines.

    - `value`: a percentage, above 0 and at most 100, or a fixed amount above 0;
    - `currency`: for a fixed coupon only, optional; when set, the coupon applies only to
      invoices in that currency and `value` must be exact at its minor unit;
    - `duration` and `periods`: how many billing periods a redemption discounts (`periods`
      is the number for `repeating`, and only then);
    - `expires_at` (stored in UTC) and `max_redemptions`: until when, and how many times,
      the coupon can be redeemed; they do not end redemptions already made;
    - `applies_to_plans`, `applies_to_charges`: the plan and charge codes it is limited to;
      empty means every plan, every charge.

    Raises, with fields relative to the coupon: `codes.InvalidCode`; `codes.InvalidValue`
    for a bad name, kind, duration, periods, limit, code list, or a currency on a
    percentage coupon; `InvalidCouponValue` for a value out of range; `money.InexactAmount`
    (field "/value") for a fixed value finer than its currency's minor unit;
    `codes.MissingField` for a repeating coupon without periods; `InvalidExpiry` for an
    expiry without a time zone.
    """

    code: str
    name: str
    kind: CouponKind
    value: Decimal
    currency: money.Currency | None
    duration: CouponDuration
    periods: int | None
    expires_at: dt.datetime | None
    max_redemptions: int | None
    applies_to_plans: tuple[str, ...]
    applies_to_charges: tuple[str, ...]

    def __post_init__(self) -> None:
        codes.code(self.code, field="/code")
        if not isinstance(self.name, str) or not 1 <= len(self.name.strip()) <= 200:
            raise codes.InvalidValue("a name must be 1 to 200 characters", field="/name")
        if not isinstance(self.kind, CouponKind):
            raise codes.InvalidValue(f"{self.kind!r} is not a coupon kind", field="/kind")
        self._check_value()
        if not isinstance(self.duration, CouponDuration):
            raise codes.InvalidValue(f"{self.duration!r} is not a coupon duration", field="/duration")
        if self.duration is CouponDuration.REPEATING:
            if self.periods is None:
                raise codes.MissingField(
                    "a repeating coupon needs periods: how many billing periods it discounts",
                    field="/periods",
                )
            codes.integer(self.periods, field="/periods", minimum=1)
        elif self.periods is not None:
            raise codes.InvalidValue(
                f"periods only applies to a repeating coupon, not to one that lasts {self.duration}",
                field="/periods",
            )
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", _aware(self.expires_at, field="/expires_at"))
        if self.max_redemptions is not None:
            codes.integer(self.max_redemptions, field="/max_redemptions", minimum=1)
        _check_codes(self.applies_to_plans, field="/applies_to/plans")
        _check_codes(self.applies_to_charges, field="/applies_to/charges")

    def _check_value(self) -> None:
        if not isinstance(self.value, Decimal) or not self.value.is_finite():
            raise codes.InvalidValue(f"value must be a finite Decimal, got {self.value!r}", field="/value")
        if self.kind is CouponKind.PERCENTAGE:
            if self.currency is not None:
                raise codes.InvalidValue(
                    "a percentage coupon applies in any currency; only a fixed one names a currency",
                    field="/currency",
                )
            if not 0 < self.value <= _HUNDRED:
                raise InvalidCouponValue(
                    f"a percentage coupon takes above 0 and at most 100 percent off, got {self.value}",
                    field="/value",
                )
            return
        if self.value <= 0:
            raise InvalidCouponValue(
                f"a fixed coupon takes an amount above 0 off, got {self.value}", field="/value"
            )
        if self.currency is not None:
            if not isinstance(self.currency, money.Currency):
                raise money.UnknownCurrency(f"{self.currency!r} is not a Currency", field="/currency")
            try:
                money.to_minor_units(self.value, self.currency)
            except money.InexactAmount as error:
                error.field = "/value"
                raise

    def applies_to(self, *, plan: str, charge: str) -> bool:
        """Whether the coupon discounts charge `charge` of plan `plan` (by their codes)."""
        return (not self.applies_to_plans or plan in self.applies_to_plans) and (
            not self.applies_to_charges or charge in self.applies_to_charges
        )

    def applies_in(self, currency: money.Currency) -> bool:
        """Whether the coupon can discount an invoice in `currency`: a fixed coupon that names
        a currency applies only in it; every other coupon applies in any currency."""
        return self.currency is None or self.currency == currency

    def can_redeem(self, *, at: dt.datetime, redemptions: int) -> bool:
        """Whether a subscription may redeem the coupon at instant `at`, when it has been
        redeemed `redemptions` times before: before `expires_at` (an expiry is the first
        instant it no longer can be) and below `max_redemptions`.

        Raises `clock.NaiveDatetime` when `at` has no time zone, `codes.InvalidValue`
        (field "/redemptions") for a negative count.
        """
        instant = require_aware(at, name="at")
        codes.integer(redemptions, field="/redemptions", minimum=0)
        if self.expires_at is not None and instant >= self.expires_at:
            return False
        return self.max_redemptions is None or redemptions < self.max_redemptions

    def discounts_period(self, *, periods_applied: int) -> bool:
        """Whether a redemption still discounts the next billing period, when it has already
        discounted `periods_applied` of them: `once` the first only, `repeating` the first
        `periods`, `forever` every one. Expiry and redemption limits do not matter here.

        Raises `codes.InvalidValue` (field "/periods_applied") for a negative count.
        """
        codes.integer(periods_applied, field="/periods_applied", minimum=0)
        if self.duration is CouponDuration.ONCE:
            return periods_applied < 1
        if self.duration is CouponDuration.REPEATING:
            return self.periods is not None and periods_applied < self.periods
        return True

    def to_spec(self) -> dict[str, object]:
        """The coupon in the scenario-file shape, every field present; `parse_coupon` reads it back."""
        return {
            "code": self.code,
            "name": self.name,
            "kind": self.kind.value,
            "value": format(self.value, "f"),
            "currency": None if self.currency is None else self.currency.code,
            "duration": self.duration.value,
            "periods": self.periods,
            "expires_at": None if self.expires_at is None else _rfc3339(self.expires_at),
            "max_redemptions": self.max_redemptions,
            "applies_to": {"plans": list(self.applies_to_plans), "charges": list(self.applies_to_charges)},
        }


def _enum_value(value: object, enum_type: type[CouponKind] | type[CouponDuration], *, field: str) -> str:
    known = [member.value for member in enum_type]
    if not isinstance(value, str) or value not in known:
        raise codes.InvalidValue(f"{value!r} is not one of {', '.join(known)}", field=field)
    return value


def parse_coupon(spec: Mapping[str, object], *, pointer: str) -> Coupon:
    """Return the coupon that `spec`, in the scenario-file shape, defines.

    The shape is {code, name?, kind (percentage | fixed), value, currency?, duration (once |
    repeating | forever), periods?, expires_at?, max_redemptions?, applies_to?: {plans?,
    charges?}}; null counts as absent; `name` defaults to the code. `value` is a decimal
    string, int or Decimal; `expires_at` an aware datetime or an RFC 3339 string with an
    offset. Every error names its field under `pointer`: `codes.UnknownField` for a key a
    coupon does not have, `codes.MissingField` for a missing code, kind, value or
    duration, `money.InvalidNumber` for a value that is not an exact number,
    `money.UnknownCurrency`, `InvalidExpiry`, and the errors `Coupon` raises.
    """
    codes.only_keys(spec, _FIELDS, pointer=pointer, what="a coupon")
    code = codes.code(codes.required(spec, "code", pointer=pointer, what="a coupon"), field=f"{pointer}/code")
    name = codes.name(spec.get("name"), field=f"{pointer}/name", default=code)
    kind = CouponKind(
        _enum_value(
            codes.required(spec, "kind", pointer=pointer, what="a coupon"),
            CouponKind,
            field=f"{pointer}/kind",
        )
    )
    value = _decimal(
        codes.required(spec, "value", pointer=pointer, what="a coupon"), field=f"{pointer}/value"
    )
    raw_currency = spec.get("currency")
    currency = None
    if raw_currency is not None:
        try:
            currency = money.currency(raw_currency)  # type: ignore[arg-type]
        except money.UnknownCurrency as error:
            error.field = f"{pointer}/currency"
            raise
    duration = CouponDuration(
        _enum_value(
            codes.required(spec, "duration", pointer=pointer, what="a coupon"),
            CouponDuration,
            field=f"{pointer}/duration",
        )
    )
    periods = spec.get("periods")
    expires_at = spec.get("expires_at")
    max_redemptions = spec.get("max_redemptions")
    applies_to = spec.get("applies_to")
    plans: tuple[str, ...] = ()
    charges: tuple[str, ...] = ()
    if applies_to is not None:
        applies_pointer = f"{pointer}/applies_to"
        if not isinstance(applies_to, Mapping):
            raise codes.InvalidValue("applies_to is an object with plans and charges", field=applies_pointer)
        codes.only_keys(applies_to, _APPLIES_TO_FIELDS, pointer=applies_pointer, what="applies_to")
        plans = codes.code_list(applies_to.get("plans"), field=f"{applies_pointer}/plans")
        charges = codes.code_list(applies_to.get("charges"), field=f"{applies_pointer}/charges")
    with _under(pointer):
        return Coupon(
            code=code,
            name=name,
            kind=kind,
            value=value,
            currency=currency,
            duration=duration,
            # Their types are checked as the coupon is built, naming their fields.
            periods=periods,  # type: ignore[arg-type]
            expires_at=None if expires_at is None else _aware(expires_at, field="/expires_at"),
            max_redemptions=max_redemptions,  # type: ignore[arg-type]
            applies_to_plans=plans,
            applies_to_charges=charges,
        )


def allocate_discount(
    *,
    coupon: Coupon,
    line_amounts: Sequence[Decimal],
    eligible: Sequence[bool],
    currency: money.Currency,
) -> list[Decimal]:
    """Return the discount on each line of an invoice in `currency`, in the lines' order.

    The discount applies to the lines marked `eligible` whose amount is above zero; every
    other line (a credit, a zero line) gets 0. Its total is, for a percentage coupon, the
    eligible amount × value / 100, rounded once half away from zero; for a fixed one, the
    value (rounded likewise when it has no currency) but never more than the eligible
    amount. The total is allocated to the eligible lines by largest remainder in
    proportion to their amounts: the discounts sum exactly to the total, each has the
    currency's decimals, and none exceeds its line's amount.

    Raises `money.CurrencyMismatch` for a fixed coupon in another currency;
    `MismatchedLines` (field "/eligible") unless there is one flag per line;
    `money.InexactAmount` or `money.InvalidNumber` (field "/line_amounts/N") for a line
    amount that is not exact at the minor unit; `codes.InvalidValue` for a flag that is
    not a bool.
    """
    if not coupon.applies_in(currency):
        raise money.CurrencyMismatch(
            f"coupon {coupon.code!r} is in {coupon.currency}; it cannot discount an invoice in {currency}",
            field="/currency",
        )
    if len(line_amounts) != len(eligible):
        raise MismatchedLines(
            f"{len(line_amounts)} line amounts but {len(eligible)} eligibility flags", field="/eligible"
        )
    minor_amounts: list[int] = []
    for i, (amount, flag) in enumerate(zip(line_amounts, eligible, strict=True)):
        if not isinstance(flag, bool):
            raise codes.InvalidValue(f"eligibility is true or false, got {flag!r}", field=f"/eligible/{i}")
        try:
            minor_amounts.append(money.to_minor_units(amount, currency))
        except InvalidInput as error:
            error.field = f"/line_amounts/{i}"
            raise
    discounted = [i for i, minor in enumerate(minor_amounts) if eligible[i] and minor > 0]
    discounts = [0] * len(minor_amounts)
    base = sum(minor_amounts[i] for i in discounted)
    if base:
        base_amount = Fraction(base, 10**currency.exponent)
        if coupon.kind is CouponKind.PERCENTAGE:
            total = base_amount * Fraction(coupon.value) / 100
        else:
            total = min(Fraction(coupon.value), base_amount)
        total_minor = money.to_minor_units(money.round_half_up_to_minor(total, currency), currency)
        shares = money.allocate(total_minor, [minor_amounts[i] for i in discounted])
        for i, share in zip(discounted, shares, strict=True):
            discounts[i] = share
    return [money.Money(minor=minor, currency=currency).amount for minor in discounts]
