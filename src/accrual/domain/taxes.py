"""Tax rates, and the tax on each invoice line.

Tax is computed per line, on the line's amount after its discount, and rounded once, half
away from zero, to the currency's minor unit. An exclusive rate adds tax on top of the
amount; an inclusive rate's tax is already inside the amount (tax = amount × rate /
(100 + rate)), so it is shown but not added again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

from accrual.domain import codes, money
from accrual.domain.errors import InvalidInput

_FIELDS = ("code", "name", "rate", "inclusive")
_HUNDRED = Decimal(100)


class TaxRateOutOfRange(codes.InvalidValue):
    title = "Tax rate out of range"


class MixedTaxInclusion(InvalidInput):
    title = "Inclusive and exclusive tax rates on one line"


class DuplicateTaxRate(InvalidInput):
    title = "Tax rate applied twice"


@contextlib.contextmanager
def _under(pointer: str) -> Iterator[None]:
    """Place the field of an `InvalidInput` raised inside under `pointer`."""
    try:
        yield
    except InvalidInput as error:
        error.field = pointer + (error.field or "")
        raise


@dataclasses.dataclass(frozen=True, slots=True)
class TaxRate:
    """A tax rate: `rate` percent (0 to 100), `inclusive` when prices already contain it.

    Raises, with fields relative to the rate: `codes.InvalidCode`; `codes.InvalidValue` for
    a bad name, a rate that is not a finite Decimal or an `inclusive` that is not a bool;
    `TaxRateOutOfRange` for a rate below 0 or above 100.
    """

    code: str
    name: str
    rate: Decimal
    inclusive: bool

    def __post_init__(self) -> None:
        codes.code(self.code, field="/code")
        if not isinstance(self.name, str) or not 1 <= len(self.name.strip()) <= 200:
            raise codes.InvalidValue("a name must be 1 to 200 characters", field="/name")
        if not isinstance(self.rate, Decimal) or not self.rate.is_finite():
            raise codes.InvalidValue(f"rate must be a finite Decimal, got {self.rate!r}", field="/rate")
        if not 0 <= self.rate <= _HUNDRED:
            raise TaxRateOutOfRange(
                f"a tax rate is a percentage from 0 to 100, got {self.rate}", field="/rate"
            )
        if not isinstance(self.inclusive, bool):
            raise codes.InvalidValue(
                f"inclusive is true or false, got {self.inclusive!r}", field="/inclusive"
            )

    def to_spec(self) -> dict[str, object]:
        """The rate in the scenario-file shape; `parse_tax_rate` reads it back."""
        return {
            "code": self.code,
            "name": self.name,
            "rate": format(self.rate, "f"),
            "inclusive": self.inclusive,
        }


def parse_tax_rate(spec: Mapping[str, object], *, pointer: str) -> TaxRate:
    """Return the tax rate that `spec`, in the scenario-file shape {code, name?, rate,
    inclusive?}, defines; `name` defaults to the code, `inclusive` to false, null counts
    as absent, and `rate` is a decimal string, int or Decimal kept as written.

    Every error names its field under `pointer`: `codes.UnknownField`, `codes.MissingField`
    for a missing code or rate, `money.InvalidNumber` for a rate that is not an exact
    number (floats and booleans included), and the errors `TaxRate` raises.
    """
    codes.only_keys(spec, _FIELDS, pointer=pointer, what="a tax rate")
    code = codes.code(
        codes.required(spec, "code", pointer=pointer, what="a tax rate"), field=f"{pointer}/code"
    )
    name = codes.name(spec.get("name"), field=f"{pointer}/name", default=code)
    raw_rate = codes.required(spec, "rate", pointer=pointer, what="a tax rate")
    if isinstance(raw_rate, bool) or not isinstance(raw_rate, str | int | Decimal):
        raise money.InvalidNumber(f"{raw_rate!r} is not an exact decimal number", field=f"{pointer}/rate")
    try:
        rate = money.parse_decimal(raw_rate)
    except money.InvalidNumber as error:
        error.field = f"{pointer}/rate"
        raise
    inclusive = spec.get("inclusive")
    with _under(pointer):
        return TaxRate(
            code=code,
            name=name,
            rate=rate,
            # Its type is checked as the rate is built, naming /inclusive.
            inclusive=False if inclusive is None else inclusive,  # type: ignore[arg-type]
        )


def _exact_amount(amount: object) -> Fraction:
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise money.InvalidNumber(f"amount must be a Decimal or int, got {amount!r}", field="/amount")
    if isinstance(amount, Decimal) and not amount.is_finite():
        raise money.InvalidNumber(f"amount must be a finite number, got {amount!r}", field="/amount")
    return Fraction(amount)


def line_tax(*, amount: Decimal, rate: TaxRate, currency: money.Currency) -> Decimal:
    """Return the tax at `rate` on a line of `amount` (after its discount), in `currency`.

    Exclusive: amount × rate / 100. Inclusive: amount × rate / (100 + rate), the tax the
    amount already contains. Rounded once, half away from zero, to the minor unit, so a
    credit (a negative amount) gets exactly the negated tax of the same positive amount.
    Raises `money.InvalidNumber` (field "/amount") for an amount that is not a finite
    Decimal or int.
    """
    return line_taxes(amount=amount, rates=[rate], currency=currency)[0]


def line_taxes(*, amount: Decimal, rates: Sequence[TaxRate], currency: money.Currency) -> list[Decimal]:
    """Return the tax of each of `rates` on a line of `amount`, in the rates' order.

    Every rate applies to the same amount: taxes do not compound. With several inclusive
    rates the amount contains them all, so each is amount × rate / (100 + the sum of the
    rates). Each tax is rounded once, half away from zero.

    Raises `MixedTaxInclusion` (field "/rates") when inclusive and exclusive rates are
    mixed on one line: whether the exclusive tax is due on the amount with or without the
    inclusive tax is a policy no rate states, so it is refused rather than guessed.
    Raises `DuplicateTaxRate` (field "/rates/N") for a rate code listed twice, and as
    `line_tax` does.
    """
    base = _exact_amount(amount)
    if len({rate.inclusive for rate in rates}) > 1:
        raise MixedTaxInclusion(
            "a line cannot carry both inclusive and exclusive tax rates: "
            + ", ".join(f"{rate.code} ({'inclusive' if rate.inclusive else 'exclusive'})" for rate in rates),
            field="/rates",
        )
    for i, rate in enumerate(rates):
        if any(other.code == rate.code for other in rates[:i]):
            raise DuplicateTaxRate(
                f"tax rate {rate.code!r} is applied twice to one line", field=f"/rates/{i}"
            )
    if rates and rates[0].inclusive:
        # The amount is the net price plus every inclusive tax: net × (100 + Σ rates) / 100.
        divisor = 100 + sum((Fraction(rate.rate) for rate in rates), Fraction(0))
    else:
        divisor = Fraction(100)
    return [money.round_half_up_to_minor(base * Fraction(rate.rate) / divisor, currency) for rate in rates]
