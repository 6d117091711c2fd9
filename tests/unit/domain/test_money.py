"""Money: currencies, exact amounts, named rounding, quantities and allocation."""

from __future__ import annotations

import ast
import decimal
import pathlib
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accrual.domain import money
from accrual.domain.errors import InvalidInput

USD = money.currency("USD")
JPY = money.currency("JPY")
KWD = money.currency("KWD")
EUR = money.currency("EUR")

MONEY_SOURCE = pathlib.Path(money.__file__)

# A context wide enough that the reference calculations below are exact for every value the
# strategies draw, so the reference is not itself a source of rounding.
REFERENCE = decimal.Context(prec=200, traps=[decimal.InvalidOperation])

currencies = st.sampled_from([JPY, USD, KWD, money.currency("CLF"), money.currency("BHD")])
exact_decimals = st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12)
decimals_near_minor = st.builds(
    lambda units, places: Decimal(units).scaleb(-places),
    st.integers(-(10**9), 10**9),
    st.integers(0, 8),
)
fractions = st.fractions(min_value=-(10**9), max_value=10**9, max_denominator=10**6)
amounts = st.one_of(exact_decimals, decimals_near_minor, fractions, st.integers(-(10**12), 10**12))


def _as_fraction(value: Decimal | Fraction | int) -> Fraction:
    return Fraction(value)


def test_context_is_explicit_and_traps_what_must_not_pass_silently() -> None:
    assert money.CONTEXT.prec == 50
    for signal in (decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow):
        assert money.CONTEXT.traps[signal]
    with pytest.raises(decimal.DivisionByZero):
        money.CONTEXT.divide(Decimal(1), Decimal(0))
    with pytest.raises(decimal.InvalidOperation):
        money.CONTEXT.multiply(Decimal("Infinity"), Decimal(0))
    quantity, unit_price = Decimal("1234567890.123456789"), Decimal("0.0000012345678901")
    assert Fraction(money.CONTEXT.multiply(quantity, unit_price)) == Fraction(quantity) * Fraction(unit_price)


# --- currencies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exponent"),
    [("JPY", 0), ("USD", 2), ("EUR", 2), ("KWD", 3), ("BHD", 3), ("CLF", 4), ("ISK", 0), ("TND", 3)],
)
def test_currency_exponent_comes_from_cldr(code: str, exponent: int) -> None:
    assert money.currency(code) == money.Currency(code=code, exponent=exponent)
    assert money.currency(code).exponent == exponent


def test_currency_lookup_is_cached() -> None:
    assert money.currency("USD") is money.currency("USD")


@pytest.mark.parametrize("code", ["ZZZ", "usd", "Usd", "US", "USDD", "", " USD", "U5D", "ÜSD"])
def test_unknown_currency_is_refused_by_name(code: str) -> None:
    with pytest.raises(money.UnknownCurrency) as raised:
        money.currency(code)
    assert repr(code) in str(raised.value)
    assert isinstance(raised.value, InvalidInput)


def test_currency_code_must_be_a_string() -> None:
    with pytest.raises(money.UnknownCurrency):
        money.currency(840)  # type: ignore[arg-type]


def test_currency_cannot_be_built_with_a_wrong_exponent() -> None:
    with pytest.raises(money.WrongCurrencyExponent):
        money.Currency(code="USD", exponent=3)
    with pytest.raises(money.UnknownCurrency):
        money.Currency(code="ZZZ", exponent=2)


def test_currency_str_is_its_code() -> None:
    assert str(KWD) == "KWD"


# --- parse_decimal ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0006", Decimal("0.0006")),
        ("50", Decimal(50)),
        ("2.0", Decimal("2.0")),
        ("1e3", Decimal(1000)),
        ("-12.30", Decimal("-12.30")),
        ("+7", Decimal(7)),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        (" 3.25\n", Decimal("3.25")),
        ("1E-2", Decimal("0.01")),
    ],
)
def test_parse_decimal_reads_strings_exactly(text: str, expected: Decimal) -> None:
    parsed = money.parse_decimal(text)
    assert parsed == expected
    assert isinstance(parsed, Decimal)


def test_parse_decimal_keeps_the_written_precision() -> None:
    assert str(money.parse_decimal("2.0")) == "2.0"
    assert str(money.parse_decimal("0.0006")) == "0.0006"


def test_parse_decimal_accepts_int_and_decimal() -> None:
    assert money.parse_decimal(50) == Decimal(50)
    assert money.parse_decimal(Decimal("1.25")) == Decimal("1.25")


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        1.5,
        0.1,
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "sNaN",
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        "",
        "abc",
        "1,000",
        "1_000",
        "١٢",
        "0x10",
        "1e",
        "--1",
        "1.2.3",
        None,
        [1],
        "1e999999",
        "1" * 51,
        "0." + "0" * 50 + "1",
    ],
)
def test_parse_decimal_refuses_what_is_not_an_exact_bounded_number(value: object) -> None:
    with pytest.raises(money.InvalidNumber) as raised:
        money.parse_decimal(value)  # type: ignore[arg-type]
    assert repr(value) in str(raised.value)


def test_parse_decimal_limits_are_inclusive() -> None:
    assert money.parse_decimal("9" * 50) == Decimal("9" * 50)
    assert money.parse_decimal("0." + "0" * 49 + "1") == Decimal("1e-50")


# --- named rounding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("0.005"), USD, "0.01"),
        (Decimal("-0.005"), USD, "-0.01"),
        (Decimal("0.015"), USD, "0.02"),
        (Decimal("0.0049999"), USD, "0.00"),
        (Decimal("-0.0049999"), USD, "0.00"),
        (Decimal("12.3"), USD, "12.30"),
        (Decimal("1E+3"), USD, "1000.00"),
        (Decimal("0.5"), JPY, "1"),
        (Decimal("-0.5"), JPY, "-1"),
        (Decimal("1234.4"), JPY, "1234"),
        (Decimal("0.0005"), KWD, "0.001"),
        (Decimal("0.8745"), KWD, "0.875"),
        (Fraction(1, 3), USD, "0.33"),
        (Fraction(2, 3), USD, "0.67"),
        (Fraction(-1, 200), USD, "-0.01"),
        (Fraction(1, 200), USD, "0.01"),
        (7, JPY, "7"),
        (-7, KWD, "-7.000"),
    ],
)
def test_round_half_up_to_minor_rounds_ties_away_from_zero(
    amount: Decimal | Fraction | int, currency: money.Currency, expected: str
) -> None:
    rounded = money.round_half_up_to_minor(amount, currency)
    assert str(rounded) == expected
    assert rounded.as_tuple().exponent == -currency.exponent


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("0.125"), USD, "0.12"),
        (Decimal("0.135"), USD, "0.14"),
        (Decimal("-0.125"), USD, "-0.12"),
        (Decimal("0.1251"), USD, "0.13"),
        (Decimal("2.5"), JPY, "2"),
        (Decimal("3.5"), JPY, "4"),
        (Fraction(1, 8), USD, "0.12"),
        (Fraction(5, 2000), KWD, "0.002"),
        (Fraction(1, 3), USD, "0.33"),
    ],
)
def test_round_half_even_to_minor_rounds_ties_to_even(
    amount: Decimal | Fraction, currency: money.Currency, expected: str
) -> None:
    assert str(money.round_half_even_to_minor(amount, currency)) == expected


def test_golden_prorations_round_half_up() -> None:
    assert money.round_half_up_to_minor(Fraction(22, 31) * 50, USD) == Decimal("35.48")
    assert money.round_half_up_to_minor(Fraction(14, 31) * 100, EUR) == Decimal("45.16")
    assert money.round_half_up_to_minor(Fraction(17, 31) * 200, EUR) == Decimal("109.68")


def test_rounding_never_reads_the_ambient_decimal_context() -> None:
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = decimal.ROUND_DOWN
        assert money.round_half_up_to_minor(Decimal("123456.785"), USD) == Decimal("123456.79")
        assert money.Money(minor=123456789, currency=USD).amount == Decimal("1234567.89")
        assert money.format_quantity(Fraction(470, 31)) == "15.1612903226"


@pytest.mark.parametrize(
    "function", [money.round_half_up_to_minor, money.round_half_even_to_minor, money.to_minor_units]
)
@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), 0.5, True, "1.5"])
def test_rounding_refuses_inexact_or_special_inputs(function: object, bad: object) -> None:
    with pytest.raises(money.InvalidNumber):
        function(bad, USD)  # type: ignore[operator]


@given(amount=amounts, currency=currencies)
def test_rounding_lands_exactly_on_the_minor_unit(
    amount: Decimal | Fraction | int, currency: money.Currency
) -> None:
    unit = Fraction(1, 10**currency.exponent)
    for function in (money.round_half_up_to_minor, money.round_half_even_to_minor):
        rounded = function(amount, currency)
        assert rounded.as_tuple().exponent == -currency.exponent
        assert (Fraction(rounded) / unit).denominator == 1
        assert abs(Fraction(rounded) - _as_fraction(amount)) <= unit / 2
        assert money.to_minor_units(rounded, currency) * unit == Fraction(rounded)


@given(amount=amounts, currency=currencies)
def test_round_half_up_is_symmetric(amount: Decimal | Fraction | int, currency: money.Currency) -> None:
    assert money.round_half_up_to_minor(-amount, currency) == -money.round_half_up_to_minor(amount, currency)
    assert money.round_half_even_to_minor(-amount, currency) == -money.round_half_even_to_minor(
        amount, currency
    )


@given(amount=st.one_of(exact_decimals, decimals_near_minor), currency=currencies)
def test_rounding_agrees_with_decimal_quantize(amount: Decimal, currency: money.Currency) -> None:
    quantum = Decimal(1).scaleb(-currency.exponent)
    half_up = amount.quantize(quantum, rounding=decimal.ROUND_HALF_UP, context=REFERENCE)
    half_even = amount.quantize(quantum, rounding=decimal.ROUND_HALF_EVEN, context=REFERENCE)
    assert money.round_half_up_to_minor(amount, currency) == half_up
    assert money.round_half_even_to_minor(amount, currency) == half_even


@given(amount=amounts, currency=currencies)
def test_rounding_is_nearest_and_breaks_ties_by_its_named_rule(
    amount: Decimal | Fraction | int, currency: money.Currency
) -> None:
    unit = Fraction(1, 10**currency.exponent)
    exact = _as_fraction(amount)
    half_up = Fraction(money.round_half_up_to_minor(amount, currency))
    half_even = Fraction(money.round_half_even_to_minor(amount, currency))
    if (exact / unit * 2).denominator == 1 and (exact / unit).denominator != 1:
        # A tie: exactly half-way between two minor units.
        assert abs(half_up) == abs(exact) + unit / 2
        assert (half_even / unit) % 2 == 0
    else:
        assert abs(half_up - exact) < unit / 2
        assert half_even == half_up


@given(
    units=st.integers(0, 10**9),
    currency=currencies,
    denominator=st.sampled_from([2, 3, 4, 7, 8, 1000, 999_999]),
    data=st.data(),
)
def test_fractions_round_by_their_exact_remainder(
    units: int, currency: money.Currency, denominator: int, data: st.DataObject
) -> None:
    numerator = data.draw(st.integers(1, denominator - 1))
    unit = Fraction(1, 10**currency.exponent)
    amount = (units + Fraction(numerator, denominator)) * unit
    up = 2 * numerator >= denominator
    even_up = 2 * numerator > denominator or (2 * numerator == denominator and units % 2 == 1)
    assert Fraction(money.round_half_up_to_minor(amount, currency)) == (units + up) * unit
    assert Fraction(money.round_half_up_to_minor(-amount, currency)) == -(units + up) * unit
    assert Fraction(money.round_half_even_to_minor(amount, currency)) == (units + even_up) * unit
    assert Fraction(money.round_half_even_to_minor(-amount, currency)) == -(units + even_up) * unit


# --- to_minor_units ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("12.30"), USD, 1230),
        (Decimal("12.3"), USD, 1230),
        (Decimal("12.300000"), USD, 1230),
        (Decimal("1E+3"), USD, 100000),
        (Decimal("-0.01"), USD, -1),
        (Decimal("1200"), JPY, 1200),
        (Decimal("0.875"), KWD, 875),
        (Decimal("-0"), USD, 0),
        (5, JPY, 5),
    ],
)
def test_to_minor_units_converts_exact_amounts(
    amount: Decimal | int, currency: money.Currency, expected: int
) -> None:
    assert money.to_minor_units(amount, currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(Decimal("12.305"), USD), (Decimal("0.5"), JPY), (Decimal("0.0001"), KWD), (Decimal("1E-30"), USD)],
)
def test_to_minor_units_refuses_to_round(amount: Decimal, currency: money.Currency) -> None:
    with pytest.raises(money.InexactAmount) as raised:
        money.to_minor_units(amount, currency)
    assert currency.code in str(raised.value)


# --- Money ------------------------------------------------------------------------------


def test_money_from_decimal_and_amount() -> None:
    price = money.Money.from_decimal(Decimal("12.3"), USD)
    assert price == money.Money(minor=1230, currency=USD)
    assert price.amount == Decimal("12.30")
    assert str(price.amount) == "12.30"
    assert str(money.Money(minor=1200, currency=JPY).amount) == "1200"
    assert str(money.Money(minor=875, currency=KWD).amount) == "0.875"
    assert str(money.Money.zero(USD).amount) == "0.00"


@pytest.mark.parametrize(
    ("minor", "currency", "expected"),
    [
        (1230, USD, "12.30"),
        (1200, JPY, "1200"),
        (875, KWD, "0.875"),
        (-50, USD, "-0.50"),
        (-5, USD, "-0.05"),
        (0, USD, "0.00"),
        (0, JPY, "0"),
        (-1, KWD, "-0.001"),
        (123456789012345678901234567890, USD, "1234567890123456789012345678.90"),
    ],
)
def test_money_format_has_exactly_the_currency_decimals(
    minor: int, currency: money.Currency, expected: str
) -> None:
    assert money.Money(minor=minor, currency=currency).format() == expected


def test_money_str_names_the_currency() -> None:
    assert str(money.Money(minor=1230, currency=USD)) == "12.30 USD"


def test_money_from_decimal_refuses_sub_minor_amounts() -> None:
    with pytest.raises(money.InexactAmount):
        money.Money.from_decimal(Decimal("12.345"), USD)
    with pytest.raises(money.InexactAmount):
        money.Money.from_decimal(Decimal("1.5"), JPY)


@pytest.mark.parametrize("minor", [True, 1.0, "100", Decimal(100), None])
def test_money_minor_must_be_an_int(minor: object) -> None:
    with pytest.raises(money.InvalidNumber):
        money.Money(minor=minor, currency=USD)  # type: ignore[arg-type]


def test_money_currency_must_be_a_currency() -> None:
    with pytest.raises(money.UnknownCurrency):
        money.Money(minor=1, currency="USD")  # type: ignore[arg-type]


def test_money_arithmetic_and_ordering_in_one_currency() -> None:
    a = money.Money(minor=1000, currency=USD)
    b = money.Money(minor=250, currency=USD)
    assert a + b == money.Money(minor=1250, currency=USD)
    assert a - b == money.Money(minor=750, currency=USD)
    assert b - a == money.Money(minor=-750, currency=USD)
    assert -a == money.Money(minor=-1000, currency=USD)
    assert b < a
    assert b <= a
    assert a > b
    assert a >= b
    assert a <= money.Money(minor=1000, currency=USD)
    assert sorted([a, b]) == [b, a]


def test_money_refuses_to_mix_currencies() -> None:
    usd = money.Money(minor=100, currency=USD)
    eur = money.Money(minor=100, currency=EUR)
    for combine in (
        lambda: usd + eur,
        lambda: usd - eur,
        lambda: usd < eur,
        lambda: usd <= eur,
        lambda: usd > eur,
        lambda: usd >= eur,
    ):
        with pytest.raises(money.CurrencyMismatch) as raised:
            combine()
        assert "USD" in str(raised.value)
        assert "EUR" in str(raised.value)
    assert usd != eur


def test_money_does_not_combine_with_bare_numbers() -> None:
    usd = money.Money(minor=100, currency=USD)
    with pytest.raises(TypeError):
        _ = usd + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = usd < Decimal(1)  # type: ignore[operator]
    number: object = 100
    assert usd != number


def test_money_is_immutable_and_hashable() -> None:
    usd = money.Money(minor=100, currency=USD)
    with pytest.raises(AttributeError):
        usd.minor = 5  # type: ignore[misc]
    assert len({usd, money.Money(minor=100, currency=USD)}) == 1


@given(
    currency=st.sampled_from([JPY, USD, KWD]),
    a=st.integers(-(10**15), 10**15),
    b=st.integers(-(10**15), 10**15),
)
def test_money_round_trips_through_format(currency: money.Currency, a: int, b: int) -> None:
    x = money.Money(minor=a, currency=currency)
    y = money.Money(minor=b, currency=currency)
    for value in (x, y, x + y, x - y, -x):
        text = value.format()
        assert money.Money.from_decimal(money.parse_decimal(text), currency) == value
        assert value.amount == Decimal(text)
        assert value.amount.as_tuple().exponent == -currency.exponent
        assert "E" not in text
        assert "e" not in text
    assert (x + y) - y == x
    assert (x + y).amount == REFERENCE.add(x.amount, y.amount)
    assert (x < y) == (a < b)


# --- quantities -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (Decimal("1000"), "1000"),
        (Decimal("1E+3"), "1000"),
        (1000, "1000"),
        (Decimal("2.50"), "2.5"),
        (Decimal("2.0"), "2"),
        (Decimal("0.0006"), "0.0006"),
        (Fraction(470, 31), "15.1612903226"),
        (Fraction(1, 3), "0.3333333333"),
        (Fraction(2, 3), "0.6666666667"),
        (Fraction(-2, 3), "-0.6666666667"),
        (Decimal("0.00000000005"), "0.0000000001"),
        (Decimal("-0.00000000005"), "-0.0000000001"),
        (Decimal("0.00000000004999"), "0"),
        (Decimal("-0.00000000004"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("0E-20"), "0"),
        (Decimal("1E-10"), "0.0000000001"),
        (Decimal("1.23456789012345"), "1.2345678901"),
        (Decimal("1E+30"), "1000000000000000000000000000000"),
        (0, "0"),
        (-42, "-42"),
    ],
)
def test_format_quantity(quantity: Decimal | Fraction | int, expected: str) -> None:
    assert money.format_quantity(quantity) == expected


def test_round_quantity() -> None:
    assert money.round_quantity(Fraction(1, 3)) == Decimal("0.3333333333")
    assert str(money.round_quantity(Decimal("2.5"))) == "2.5000000000"
    assert money.round_quantity(Decimal("2.5"), places=0) == Decimal(3)
    assert money.round_quantity(Decimal("-2.5"), places=0) == Decimal(-3)
    assert money.round_quantity(Fraction(-1, 8), places=2) == Decimal("-0.13")


@pytest.mark.parametrize("places", [-1, True, 1.5, "2"])
def test_round_quantity_refuses_bad_places(places: object) -> None:
    with pytest.raises(money.InvalidNumber):
        money.round_quantity(Decimal(1), places=places)  # type: ignore[arg-type]


@given(quantity=st.one_of(exact_decimals, decimals_near_minor, fractions, st.integers(-(10**30), 10**30)))
def test_format_quantity_is_plain_exact_or_ten_places(quantity: Decimal | Fraction | int) -> None:
    text = money.format_quantity(quantity)
    assert "e" not in text.lower()
    assert text != "-0"
    if "." in text:
        assert not text.endswith("0")
        assert not text.endswith(".")
        assert len(text.split(".")[1]) <= 10
    shown = Fraction(Decimal(text))
    assert shown == Fraction(money.round_quantity(quantity))
    assert abs(shown - _as_fraction(quantity)) <= Fraction(1, 2 * 10**10)
    if (Fraction(quantity) * 10**10).denominator == 1:
        assert shown == Fraction(quantity)


# --- allocate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (100, [1, 1, 1], [34, 33, 33]),
        (-100, [1, 1, 1], [-34, -33, -33]),
        (1, [1, 1, 1], [1, 0, 0]),
        (2, [1, 1, 1], [1, 1, 0]),
        (10, [0, 1], [0, 10]),
        (0, [3, 4], [0, 0]),
        (5, [0, 0], [3, 2]),
        (0, [0, 0], [0, 0]),
        (-5, [0, 0, 0], [-2, -2, -1]),
        (1000, [3333, 3333, 3334], [333, 333, 334]),
        (10, [Decimal("0.5"), Fraction(1, 3), 0], [6, 4, 0]),
        (7, [Decimal("12.30"), Decimal("2.70")], [6, 1]),
        (3, [1, 2, 1, 2], [1, 1, 0, 1]),
        (101, [50, 50], [51, 50]),
    ],
)
def test_allocate_examples(total: int, weights: list[int | Decimal | Fraction], expected: list[int]) -> None:
    assert money.allocate(total, weights) == expected


def test_allocate_refuses_empty_and_negative_weights() -> None:
    with pytest.raises(money.InvalidAllocation):
        money.allocate(100, [])
    with pytest.raises(money.InvalidAllocation) as raised:
        money.allocate(100, [1, -1, 2])
    assert "weights[1]" in str(raised.value)


@pytest.mark.parametrize("total", [True, 1.5, Decimal(1), "100"])
def test_allocate_total_must_be_an_int(total: object) -> None:
    with pytest.raises(money.InvalidNumber):
        money.allocate(total, [1, 1])  # type: ignore[arg-type]


@pytest.mark.parametrize("weight", [0.5, True, Decimal("NaN"), Decimal("Infinity"), "1"])
def test_allocate_weights_must_be_exact_numbers(weight: object) -> None:
    with pytest.raises(money.InvalidNumber):
        money.allocate(100, [1, weight])  # type: ignore[list-item]


weights_lists = st.lists(
    st.one_of(
        st.integers(0, 10**6),
        st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False, allow_infinity=False),
        st.fractions(min_value=0, max_value=1000, max_denominator=1000),
        st.just(0),
    ),
    min_size=1,
    max_size=8,
)


@given(total=st.integers(-(10**12), 10**12), weights=weights_lists)
def test_allocate_sums_to_total_with_each_part_within_one_of_its_share(
    total: int, weights: list[int | Decimal | Fraction]
) -> None:
    parts = money.allocate(total, weights)
    assert len(parts) == len(weights)
    assert sum(parts) == total
    ratios = [Fraction(w) for w in weights]
    weight_sum = sum(ratios, Fraction(0))
    if weight_sum == 0:
        ratios = [Fraction(1)] * len(ratios)
        weight_sum = Fraction(len(ratios))
    for part, ratio in zip(parts, ratios, strict=True):
        share = total * ratio / weight_sum
        assert share - 1 < part < share + 1
        assert part in (share.numerator // share.denominator, -(-share.numerator // share.denominator))
        if ratio == 0:
            assert part == 0
    assert money.allocate(-total, weights) == [-part for part in parts]


# --- project bans -----------------------------------------------------------------------


def _banned_calls(source: pathlib.Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in {"float", "round"}:
            found.append(f"{node.func.id}( at line {node.lineno}")
        if isinstance(node.func, ast.Attribute) and node.func.attr in {"now", "today", "utcnow", "time"}:
            found.append(f".{node.func.attr}( at line {node.lineno}")
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            found += [
                f"import {name} at line {node.lineno}"
                for name in modules
                if name.split(".")[0] in {"sqlalchemy", "psycopg", "fastapi", "httpx", "time", "datetime"}
            ]
    return found


def test_money_module_has_no_float_round_or_clock_reads() -> None:
    assert _banned_calls(MONEY_SOURCE) == []
    source = MONEY_SOURCE.read_text()
    assert "float(" not in source
    assert "round(" not in source
