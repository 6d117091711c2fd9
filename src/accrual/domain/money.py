"""Money: integer minor units at rest, exact decimals in flight, rounding only by name.

An amount is stored as an integer number of the currency's minor units (cents for USD, yen
for JPY, fils for KWD); the exponent of each currency comes from CLDR's ISO 4217 data as
shipped with babel. Calculations in flight use `Decimal` or `fractions.Fraction` and are
exact; the only way back to a storable amount is one of the named rounding functions, each
of which says its mode. Nothing here uses binary floating point or the ambient decimal
context.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import re
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

import babel.numbers

from accrual.domain.errors import InvalidInput

# The decimal context for arithmetic on amounts in flight, such as a quantity times a unit
# price (`CONTEXT.multiply(q, p)`). It is explicit so that no result depends on whatever the
# thread's default context happens to be; 50 digits hold the exact product of any two
# numbers of up to 25 significant digits; the traps turn a NaN, a division by zero or an
# overflow into an exception instead of a quiet special value. It does not trap Inexact,
# so a division here could round silently: divide with `Fraction` instead, and come back to
# a decimal through a named rounding function. This module itself computes with integers.
CONTEXT = decimal.Context(
    prec=50,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=999_999,
    Emin=-999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

# Bounds on the numbers `parse_decimal` accepts from outside. They are far beyond any
# price or quantity, and they stop a hostile input such as "1e999999" from turning into a
# million-digit string or integer further down.
MAX_SIGNIFICANT_DIGITS = 50
MAX_INTEGER_DIGITS = 50
MAX_DECIMAL_PLACES = 50

QUANTITY_PLACES = 10

# ASCII digits only: `Decimal` also accepts other scripts' digits and underscores, which
# are not how anyone writes an amount in a file or an API request.
_DECIMAL_LITERAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,9})?")
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")


class UnknownCurrency(InvalidInput):
    title = "Unknown currency"


class WrongCurrencyExponent(InvalidInput):
    title = "Wrong currency exponent"


class InvalidNumber(InvalidInput):
    title = "Invalid number"


class InexactAmount(InvalidInput):
    title = "Amount is finer than the currency's minor unit"


class CurrencyMismatch(InvalidInput):
    title = "Currencies do not match"


class InvalidAllocation(InvalidInput):
    title = "Amount cannot be allocated"


@functools.cache
def _known_codes() -> frozenset[str]:
    return frozenset(babel.numbers.list_currencies())


@dataclasses.dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency and its exponent: the number of decimals of its minor unit.

    Obtain one with `currency(code)`. Constructing it directly is checked too: the code
    must be known to CLDR and the exponent must be CLDR's, so a `Currency("USD", 3)`
    cannot exist.
    """

    code: str
    exponent: int

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or self.code not in _known_codes():
            raise UnknownCurrency(f"{self.code!r} is not an ISO 4217 currency code")
        expected = babel.numbers.get_currency_precision(self.code)
        if isinstance(self.exponent, bool) or self.exponent != expected:
            raise WrongCurrencyExponent(
                f"{self.code} has {expected} decimal places in ISO 4217, not {self.exponent!r}"
            )

    def __str__(self) -> str:
        return self.code


def currency(code: str) -> Currency:
    """Return the currency with ISO 4217 code `code` (e.g. "USD"), exponent from CLDR.

    The code must be three uppercase letters known to CLDR; lowercase is refused rather
    than guessed at. Raises `UnknownCurrency` naming the code otherwise.
    """
    if not isinstance(code, str) or not _CURRENCY_CODE.fullmatch(code):
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 currency code")
    return _currency(code)


@functools.cache
def _currency(code: str) -> Currency:
    if code not in _known_codes():
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 currency code")
    return Currency(code=code, exponent=babel.numbers.get_currency_precision(code))


def parse_decimal(value: str | int | Decimal) -> Decimal:
    """Return `value` as an exact `Decimal`, keeping the precision it was written with.

    Accepts a decimal literal string ("0.0006", "50", "2.0", "1e3", surrounding whitespace
    ignored), an `int` or a finite `Decimal`. Raises `InvalidNumber` naming the value for a
    bool, a float (already inexact), NaN, an infinity, a malformed string, or a number
    with more than `MAX_SIGNIFICANT_DIGITS` significant digits, more than
    `MAX_INTEGER_DIGITS` digits before the point or more than `MAX_DECIMAL_PLACES` after.
    """
    # bool is an int subclass and float is the very thing this function keeps out.
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidNumber(f"{value!r} is not an exact decimal number")
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_LITERAL.fullmatch(text):
            raise InvalidNumber(f"{value!r} is not a decimal number")
        number = Decimal(text)
    elif isinstance(value, int):
        number = Decimal(value)
    else:
        number = value
    if not number.is_finite():
        raise InvalidNumber(f"{value!r} is not a finite number")
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int):  # pragma: no cover - finite decimals have an int exponent
        raise InvalidNumber(f"{value!r} is not a finite number")
    if (
        len(number.as_tuple().digits) > MAX_SIGNIFICANT_DIGITS
        or number.adjusted() >= MAX_INTEGER_DIGITS
        or exponent < -MAX_DECIMAL_PLACES
    ):
        raise InvalidNumber(f"{value!r} has more digits than any amount or quantity can")
    return number


def _exact_ratio(value: Decimal | Fraction | int, *, name: str) -> Fraction:
    # Every rounding below works on the exact rational value, so a Decimal and a Fraction
    # holding the same number always round the same way.
    if isinstance(value, bool) or not isinstance(value, Decimal | Fraction | int):
        raise InvalidNumber(f"{name} must be a Decimal, Fraction or int, got {value!r}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidNumber(f"{name} must be a finite number, got {value!r}")
    return Fraction(value)


def _power_of_ten(places: int) -> int:
    # `int ** int` is typed as Any because a negative exponent yields a float; the places
    # passed here never are negative, so the result is an exact int.
    power: int = 10**places
    return power


def _round_half(value: Fraction, *, places: int, half_even: bool) -> int:
    """Return `value` × 10**places rounded to an integer: ties away from zero or to even."""
    scaled = value * _power_of_ten(places)
    quotient, remainder = divmod(abs(scaled.numerator), scaled.denominator)
    twice = 2 * remainder
    if twice > scaled.denominator or (twice == scaled.denominator and (not half_even or quotient % 2 == 1)):
        quotient += 1
    return -quotient if scaled.numerator < 0 else quotient


def _scaled_decimal(units: int, *, places: int) -> Decimal:
    # Parsed from its text, which is exact for any size; `scaleb` would round to the
    # context's precision.
    return Decimal(f"{units}E-{places}")


def _plain(units: int, *, places: int) -> str:
    whole, fraction = divmod(abs(units), _power_of_ten(places))
    sign = "-" if units < 0 else ""
    if places == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{places}d}"


def round_half_up_to_minor(amount: Decimal | Fraction | int, currency: Currency) -> Decimal:
    """Return `amount` rounded to `currency`'s minor unit, ties away from zero.

    This is `decimal.ROUND_HALF_UP`: 0.005 USD → 0.01 and −0.005 USD → −0.01. The result
    has exactly the currency's number of decimal places (Decimal("12.30")). Exact for any
    `Decimal`, `Fraction` or `int`. Raises `InvalidNumber` for NaN, an infinity, a float
    or a bool.
    """
    ratio = _exact_ratio(amount, name="amount")
    units = _round_half(ratio, places=currency.exponent, half_even=False)
    return _scaled_decimal(units, places=currency.exponent)


def round_half_even_to_minor(amount: Decimal | Fraction | int, currency: Currency) -> Decimal:
    """Return `amount` rounded to `currency`'s minor unit, ties to the even unit (banker's).

    0.125 USD → 0.12, 0.135 USD → 0.14. The result has exactly the currency's number of
    decimal places. Raises `InvalidNumber` for NaN, an infinity, a float or a bool.
    """
    ratio = _exact_ratio(amount, name="amount")
    units = _round_half(ratio, places=currency.exponent, half_even=True)
    return _scaled_decimal(units, places=currency.exponent)


def to_minor_units(amount: Decimal | int, currency: Currency) -> int:
    """Return `amount` as an integer number of `currency`'s minor units (12.30 USD → 1230).

    Does not round: raises `InexactAmount` when `amount` has a nonzero digit finer than
    the minor unit (12.305 USD); trailing zeros are fine (12.300 USD → 1230). Raises
    `InvalidNumber` for NaN, an infinity, a float or a bool.
    """
    if type(amount) is Decimal and amount.is_finite():
        # The common case, exactly and without a Fraction: the decimal's exact ratio (whose
        # denominator is a power of two times a power of five) scaled to minor units.
        numerator, denominator = amount.as_integer_ratio()
        units, remainder = divmod(numerator * _power_of_ten(currency.exponent), denominator)
        if remainder:
            raise InexactAmount(
                f"{amount} has more than {currency.exponent} decimal places, "
                f"the minor unit of {currency.code}"
            )
        return units
    scaled = _exact_ratio(amount, name="amount") * _power_of_ten(currency.exponent)
    if scaled.denominator != 1:
        raise InexactAmount(
            f"{amount} has more than {currency.exponent} decimal places, the minor unit of {currency.code}"
        )
    return scaled.numerator


def round_quantity(quantity: Decimal | Fraction | int, *, places: int = QUANTITY_PLACES) -> Decimal:
    """Return `quantity` rounded half away from zero to `places` decimals (default 10).

    The result has exactly `places` decimal places. Raises `InvalidNumber` for NaN, an
    infinity, a float or a bool, or when `places` is not a non-negative int.
    """
    if isinstance(places, bool) or not isinstance(places, int) or places < 0:
        raise InvalidNumber(f"places must be a non-negative int, got {places!r}")
    ratio = _exact_ratio(quantity, name="quantity")
    return _scaled_decimal(_round_half(ratio, places=places, half_even=False), places=places)


def format_quantity(quantity: Decimal | Fraction | int) -> str:
    """Return `quantity` as reports show it: plain digits, trailing zeros dropped.

    Exact when it has at most 10 decimals ("1000", "2.5", "0.0006"), otherwise rounded half
    away from zero to 10 decimals ("15.1612903226"); never exponent notation and never
    "-0". Raises `InvalidNumber` for NaN, an infinity, a float or a bool.
    """
    ratio = _exact_ratio(quantity, name="quantity")
    units = _round_half(ratio, places=QUANTITY_PLACES, half_even=False)
    places = QUANTITY_PLACES
    while places > 0 and units % 10 == 0:
        units //= 10
        places -= 1
    return _plain(units, places=places)


@dataclasses.dataclass(frozen=True, slots=True)
class Money:
    """An amount of one currency, held as an integer number of its minor units.

    `+`, `-` and the ordering operators only combine amounts of the same currency and
    raise `CurrencyMismatch` otherwise. `==` never raises: amounts in different currencies
    are simply unequal.
    """

    minor: int
    currency: Currency

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise InvalidNumber(f"Money.minor must be an int of minor units, got {self.minor!r}")
        if not isinstance(self.currency, Currency):
            raise UnknownCurrency(f"Money.currency must be a Currency, got {self.currency!r}")

    @classmethod
    def from_decimal(cls, amount: Decimal | int, currency: Currency) -> Money:
        """Return `amount` (in major units, e.g. Decimal("12.30")) of `currency`.

        Raises `InexactAmount` when `amount` has more decimals than the currency's minor
        unit allows (round it with a named function first), `InvalidNumber` for NaN, an
        infinity, a float or a bool.
        """
        return cls(minor=to_minor_units(amount, currency), currency=currency)

    @classmethod
    def zero(cls, currency: Currency) -> Money:
        """Return no money in `currency`."""
        return cls(minor=0, currency=currency)

    @property
    def amount(self) -> Decimal:
        """The amount in major units, with exactly the currency's decimals (Decimal("12.30"))."""
        return _scaled_decimal(self.minor, places=self.currency.exponent)

    def format(self) -> str:
        """Return the amount as reports show it: "12.30", JPY "1200", KWD "0.875", "-0.50"."""
        return _plain(self.minor, places=self.currency.exponent)

    def __str__(self) -> str:
        return f"{self.format()} {self.currency.code}"

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency.code} with {other.currency.code} amounts")

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(minor=self.minor + other.minor, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(minor=self.minor - other.minor, currency=self.currency)

    def __neg__(self) -> Money:
        return Money(minor=-self.minor, currency=self.currency)

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.minor >= other.minor


def allocate(total: int, weights: Sequence[int | Decimal | Fraction]) -> list[int]:
    """Split `total` minor units into parts proportional to `weights`, summing exactly to `total`.

    Largest remainder: each part first gets the floor of its exact share, then the units
    left over go one each to the parts with the largest remainders, ties to the lower
    index. Every part is therefore the floor or the ceiling of its exact share, and a zero
    weight gets nothing. A negative `total` is allocated as its absolute value and negated,
    so `allocate(-t, w) == [-p for p in allocate(t, w)]`. When every weight is zero the
    total is split evenly (as if all weights were equal, extra units to the first parts),
    because there is no proportion to follow and a split that sums is still owed.

    Raises `InvalidAllocation` for an empty `weights` or a negative weight, and
    `InvalidNumber` for a non-integer `total` or a weight that is not a finite exact number.
    """
    if isinstance(total, bool) or not isinstance(total, int):
        raise InvalidNumber(f"total must be an int of minor units, got {total!r}")
    if not weights:
        raise InvalidAllocation("cannot allocate over an empty list of weights")
    ratios = [_exact_ratio(weight, name=f"weights[{i}]") for i, weight in enumerate(weights)]
    for i, ratio in enumerate(ratios):
        if ratio < 0:
            raise InvalidAllocation(f"weights[{i}] is negative ({weights[i]!r})")
    weight_sum = sum(ratios, Fraction(0))
    if weight_sum == 0:
        ratios = [Fraction(1)] * len(ratios)
        weight_sum = Fraction(len(ratios))
    magnitude = abs(total)
    shares = [magnitude * ratio / weight_sum for ratio in ratios]
    parts = [share.numerator // share.denominator for share in shares]
    left_over = magnitude - sum(parts)
    # The remainders are each below 1 and sum to `left_over`, so at least `left_over` of
    # them are positive and every unit handed out goes to a part with a real remainder.
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - parts[i]), i))
    for i in by_remainder[:left_over]:
        parts[i] += 1
    return [-part for part in parts] if total < 0 else parts
