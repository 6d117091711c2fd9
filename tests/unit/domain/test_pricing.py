"""Price models: parsing charge definitions, and rating quantities and events into money."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accrual.domain import codes, money, pricing
from accrual.domain.errors import InvalidInput
from accrual.domain.pricing import (
    ChargeDefinition,
    ChargeTiming,
    Flat,
    Graduated,
    Package,
    Percentage,
    PerUnit,
    Tier,
    Volume,
)

USD = money.currency("USD")
JPY = money.currency("JPY")
KWD = money.currency("KWD")
BHD = money.currency("BHD")
D = Decimal

GRADUATED_SPEC: dict[str, object] = {
    "tiers": [
        {"up_to": 10, "unit_amount": "10", "flat_amount": "2"},
        {"up_to": None, "unit_amount": "5", "flat_amount": "3"},
    ]
}
VOLUME_SPEC: dict[str, object] = {
    "tiers": [
        {"up_to": 10000, "unit_amount": "0.0010", "flat_amount": "10"},
        {"up_to": 50000, "unit_amount": "0.0008", "flat_amount": "10"},
        {"up_to": 100000, "unit_amount": "0.0006", "flat_amount": "10"},
        {"up_to": None, "unit_amount": "0.0004", "flat_amount": "10"},
    ]
}
PACKAGE_SPEC: dict[str, object] = {"package_size": 100, "package_amount": "5", "free_units": 100}
PERCENTAGE_SPEC: dict[str, object] = {"rate": "1.2", "fixed_amount": "0.10", "free_events": 3}


def model(kind: str, params: Mapping[str, object]) -> pricing.PriceModel:
    return pricing.parse_price_model(kind, params, pointer="")


GRADUATED = model("graduated", GRADUATED_SPEC)
VOLUME = model("volume", VOLUME_SPEC)
PACKAGE = model("package", PACKAGE_SPEC)


def percent(**params: object) -> Percentage:
    price = model("percentage", params)
    assert isinstance(price, Percentage)
    return price


PERCENTAGE = percent(**PERCENTAGE_SPEC)


def rate_usd(
    price: pricing.PriceModel, quantity: Decimal | Fraction | int, **kwargs: object
) -> pricing.Rating:
    return pricing.rate(price, quantity=quantity, currency=USD, unit_label="units", **kwargs)  # type: ignore[arg-type]


def amounts(rating: pricing.Rating) -> list[Decimal]:
    return [line.amount for line in rating.lines]


def descriptions(rating: pricing.Rating) -> list[str]:
    return [line.description for line in rating.lines]


def assert_well_formed(rating: pricing.Rating, currency: money.Currency) -> None:
    """The invariants of every rating: lines sum to the amount, all on the minor unit."""
    assert sum(amounts(rating), Decimal(0)) == rating.amount
    for value in [rating.amount, rating.minimum_true_up, *amounts(rating)]:
        assert value.as_tuple().exponent == -currency.exponent
        assert (Fraction(value) * 10**currency.exponent).denominator == 1
    assert rating.minimum_true_up >= 0
    assert rating.description == "; ".join(descriptions(rating))


# --- golden figures ----------------------------------------------------------------------


def test_package_golden_five_dollars_per_hundred_with_hundred_free() -> None:
    rating = pricing.rate(PACKAGE, quantity=D(201), currency=USD, unit_label="calls")
    assert rating.amount == D("10.00")
    assert rating.quantity == D(201)
    assert rating.unit_amount is None
    assert descriptions(rating) == ["100 free calls", "2 packages of 100 calls at $5.00"]
    assert amounts(rating) == [D("0.00"), D("10.00")]
    assert [line.quantity for line in rating.lines] == [D(100), D(2)]
    assert_well_formed(rating, USD)


def test_volume_golden_all_units_at_the_containing_tier_plus_its_flat_fee() -> None:
    rating = pricing.rate(VOLUME, quantity=D(65000), currency=USD, unit_label="calls")
    assert rating.amount == D("49.00")
    assert rating.description == "65,000 calls at $0.0006 + $10.00 flat"
    assert rating.unit_amount is None  # the tier has a flat fee: no single price per unit
    assert rating.lines[0].unit_amount == D("0.0006")
    assert_well_formed(rating, USD)


def test_graduated_golden_each_tier_prices_its_units_and_charges_its_flat_once() -> None:
    rating = rate_usd(GRADUATED, D(12))
    assert rating.amount == D("115.00")  # 10 × 10 + 2 + 2 × 5 + 3
    assert descriptions(rating) == ["units 1–10 at $10.00 + $2.00 flat", "units 11–12 at $5.00 + $3.00 flat"]
    assert amounts(rating) == [D("102.00"), D("13.00")]
    assert [line.quantity for line in rating.lines] == [D(10), D(2)]
    assert rating.unit_amount is None
    assert_well_formed(rating, USD)


def test_per_unit_golden() -> None:
    rating = pricing.rate(PerUnit(amount=D("0.05")), quantity=D(1000), currency=USD, unit_label="calls")
    assert rating.amount == D("50.00")
    assert rating.unit_amount == D("0.05")
    assert rating.description == "1,000 calls at $0.05"
    assert rating.lines == (
        pricing.PriceLine(
            description="1,000 calls at $0.05", quantity=D(1000), unit_amount=D("0.05"), amount=D("50.00")
        ),
    )


def test_weighted_sum_quantity_is_priced_exactly_and_reported_to_ten_decimals() -> None:
    rating = pricing.rate(
        PerUnit(amount=D(1)), quantity=Fraction(470, 31), currency=USD, unit_label="GB-months"
    )
    assert rating.amount == D("15.16")
    assert rating.quantity == D("15.1612903226")
    assert rating.description == "15.1612903226 GB-months at $1.00"
    assert_well_formed(rating, USD)


def test_percentage_golden_free_events_then_rate_plus_fixed_fee() -> None:
    rating = pricing.rate_events(
        PERCENTAGE, amounts=[D(200), D(100), D(100), D(50)], currency=USD, unit_label="transactions"
    )
    assert rating.amount == D("0.70")
    assert rating.quantity == D(450)
    assert rating.unit_amount is None
    assert descriptions(rating) == ["3 free transactions", "1 transaction: 1.2% of $50.00 + $0.10 each"]
    assert amounts(rating) == [D("0.00"), D("0.70")]
    assert [line.quantity for line in rating.lines] == [D(3), D(1)]
    assert_well_formed(rating, USD)


def test_flat_fee_is_amount_times_quantity_times_proration() -> None:
    rating = pricing.rate(
        Flat(amount=D("50.00")), quantity=1, currency=USD, unit_label="seats", proration=Fraction(22, 31)
    )
    assert rating.amount == D("35.48")
    assert rating.unit_amount == D("50.00")
    assert rating.quantity == D(1)
    assert rating.description == "1 seat at $50.00, prorated 22/31"
    seats = pricing.rate(Flat(amount=D("50.00")), quantity=3, currency=USD, unit_label="seats")
    assert seats.amount == D("150.00")
    assert seats.description == "3 seats at $50.00"


def test_flat_proration_by_the_second_reads_as_a_decimal() -> None:
    rating = rate_usd(Flat(amount=D(100)), 1, proration=Fraction(1_000_000, 2_678_400))
    assert rating.amount == D("37.34")
    assert rating.description == "1 unit at $100.00, prorated 0.3733572282"


# --- edges -------------------------------------------------------------------------------


def test_quantity_zero_in_every_model() -> None:
    assert rate_usd(PerUnit(amount=D("0.05")), 0).amount == D("0.00")
    graduated = rate_usd(GRADUATED, 0)
    assert graduated.amount == D("0.00")  # no tier is entered, so no flat fee either
    assert descriptions(graduated) == ["0 units"]
    assert graduated.unit_amount is None  # the first tier has a flat fee
    volume = rate_usd(VOLUME, 0)
    assert volume.amount == D("10.00")  # 0 falls in the first tier, whose flat fee is charged
    assert (
        volume.description == "0 units at $0.001 + $10.00 flat"
    )  # babel drops trailing zeros past the cents
    package = rate_usd(PACKAGE, 0)
    assert package.amount == D("0.00")
    assert descriptions(package) == ["0 packages of 100 units at $5.00"]
    assert rate_usd(Flat(amount=D(50)), 0).amount == D("0.00")
    for rating in (graduated, volume, package):
        assert_well_formed(rating, USD)


def test_exactly_on_a_tier_bound_stays_in_that_tier() -> None:
    on_bound = rate_usd(GRADUATED, D(10))
    assert on_bound.amount == D("102.00")  # the second tier's flat fee is not charged yet
    assert descriptions(on_bound) == ["units 1–10 at $10.00 + $2.00 flat"]
    assert rate_usd(VOLUME, D(10000)).amount == D("20.00")  # 10000 × 0.0010 + 10
    assert rate_usd(VOLUME, D(10001)).amount == D("18.00")  # 10001 × 0.0008 + 10 = 18.0008
    assert rate_usd(VOLUME, D(50000)).amount == D("50.00")


def test_one_unit_past_the_last_bound() -> None:
    assert rate_usd(VOLUME, D(100001)).amount == D("50.00")  # 100001 × 0.0004 + 10 = 50.0004
    past = rate_usd(GRADUATED, D(11))
    assert past.amount == D("110.00")
    assert descriptions(past) == ["units 1–10 at $10.00 + $2.00 flat", "unit 11 at $5.00 + $3.00 flat"]


def test_fractional_quantities_and_bounds() -> None:
    rating = rate_usd(GRADUATED, D("10.5"))
    assert rating.amount == D("107.50")
    assert descriptions(rating) == [
        "units 1–10 at $10.00 + $2.00 flat",
        "units above 10 up to 10.5 at $5.00 + $3.00 flat",
    ]
    assert rating.lines[1].quantity == D("0.5")
    first = pricing.rate(GRADUATED, quantity=D("2.5"), currency=USD, unit_label="GB")
    assert first.description == "first 2.5 GB at $10.00 + $2.00 flat"
    assert first.amount == D("27.00")
    fractional_tiers = model(
        "graduated",
        {"tiers": [{"up_to": "0.5", "unit_amount": "2"}, {"up_to": None, "unit_amount": "1"}]},
    )
    assert rate_usd(fractional_tiers, D("0.75")).amount == D("1.25")
    assert rate_usd(fractional_tiers, D("0.5")).unit_amount == D(2)
    package = model("package", {"package_size": "0.5", "package_amount": "1", "free_units": "0.25"})
    assert rate_usd(package, D("0.25")).amount == D("0.00")
    assert rate_usd(package, D("0.26")).amount == D("1.00")
    assert rate_usd(package, D("0.75")).amount == D("1.00")
    assert rate_usd(package, D("0.7501")).amount == D("2.00")


def test_package_boundaries() -> None:
    assert rate_usd(PACKAGE, D(100)).amount == D("0.00")
    assert rate_usd(PACKAGE, D(101)).amount == D("5.00")
    assert rate_usd(PACKAGE, D(200)).amount == D("5.00")
    assert rate_usd(PACKAGE, D(300)).amount == D("10.00")
    one = pricing.rate(PACKAGE, quantity=D(150), currency=USD, unit_label="calls")
    assert descriptions(one) == ["100 free calls", "1 package of 100 calls at $5.00"]


def test_zero_decimal_currency_rounds_half_away_from_zero() -> None:
    half_yen = PerUnit(amount=D("0.5"))
    rating = pricing.rate(half_yen, quantity=D(3), currency=JPY, unit_label="calls")
    assert rating.amount == D("2")
    assert str(rating.amount) == "2"
    assert rating.description == "3 calls at ¥0.5"
    assert pricing.rate(half_yen, quantity=D(5), currency=JPY, unit_label="calls").amount == D("3")
    volume = pricing.rate(VOLUME, quantity=D(65000), currency=JPY, unit_label="calls")
    assert str(volume.amount) == "49"
    assert_well_formed(volume, JPY)


def test_three_decimal_currency() -> None:
    rating = pricing.rate(PerUnit(amount=D("0.0005")), quantity=D(1001), currency=KWD, unit_label="calls")
    assert str(rating.amount) == "0.501"  # 0.5005 rounds half away from zero
    graduated = pricing.rate(GRADUATED, quantity=D("10.0001"), currency=KWD, unit_label="units")
    assert str(graduated.amount) == "105.001"  # 102 + 0.0005 + 3 = 105.0005
    assert_well_formed(graduated, KWD)


def test_the_total_is_rounded_once_not_line_by_line() -> None:
    tiny = model(
        "graduated",
        {"tiers": [{"up_to": 1, "unit_amount": "0.004"}, {"up_to": None, "unit_amount": "0.004"}]},
    )
    rating = rate_usd(tiny, D(2))
    # Each tier alone would round to 0.00; together they are 0.008, which rounds to 0.01.
    assert rating.amount == D("0.01")
    assert sorted(amounts(rating)) == [D("0.00"), D("0.01")]


def test_lines_already_exact_keep_their_exact_amounts() -> None:
    prices = model(
        "graduated",
        {
            "tiers": [
                {"up_to": 1, "unit_amount": "1.00"},
                {"up_to": 2, "unit_amount": "0.003"},
                {"up_to": None, "unit_amount": "0.003"},
            ]
        },
    )
    rating = rate_usd(prices, D(3))
    # 1.00 + 0.003 + 0.003 = 1.006 → 1.01; the exact 1.00 stays 1.00, and the cent left over
    # goes to a line whose exact amount has a remainder.
    assert rating.amount == D("1.01")
    assert amounts(rating) == [D("1.00"), D("0.01"), D("0.00")]


def test_maximum_caps_the_amount_with_a_line_of_its_own() -> None:
    per_call = PerUnit(amount=D("0.05"))
    rating = pricing.rate(per_call, quantity=D(10000), currency=USD, unit_label="calls", maximum=D(100))
    assert rating.amount == D("100.00")
    assert rating.capped
    assert descriptions(rating) == ["10,000 calls at $0.05", "capped at $100.00"]
    assert amounts(rating) == [D("500.00"), D("-400.00")]
    assert_well_formed(rating, USD)
    under = pricing.rate(per_call, quantity=D(100), currency=USD, unit_label="calls", maximum=D(100))
    assert not under.capped
    assert under.amount == D("5.00")
    prorated = pricing.rate(
        per_call,
        quantity=D(10000),
        currency=USD,
        unit_label="calls",
        maximum=D(100),
        proration=Fraction(1, 3),
    )
    assert prorated.amount == D("33.33")


def test_minimum_true_up_is_reported_apart_from_the_amount() -> None:
    per_call = PerUnit(amount=D("0.05"))
    short = pricing.rate(per_call, quantity=D(100), currency=USD, unit_label="calls", minimum=D(20))
    assert short.amount == D("5.00")
    assert short.minimum_true_up == D("15.00")
    met = pricing.rate(per_call, quantity=D(1000), currency=USD, unit_label="calls", minimum=D(20))
    assert met.minimum_true_up == D("0.00")
    prorated = pricing.rate(
        per_call, quantity=D(100), currency=USD, unit_label="calls", minimum=D(20), proration=Fraction(1, 2)
    )
    assert prorated.minimum_true_up == D("5.00")
    assert pricing.rate(per_call, quantity=D(0), currency=USD, unit_label="calls").minimum_true_up == D(
        "0.00"
    )


@pytest.mark.parametrize(
    ("price", "quantity", "unit_amount"),
    [
        (
            model(
                "graduated",
                {"tiers": [{"up_to": 10, "unit_amount": "2"}, {"up_to": None, "unit_amount": "1"}]},
            ),
            5,
            D(2),
        ),
        (
            model(
                "graduated",
                {"tiers": [{"up_to": 10, "unit_amount": "2"}, {"up_to": None, "unit_amount": "1"}]},
            ),
            0,
            D(2),
        ),
        (
            model(
                "graduated",
                {"tiers": [{"up_to": 10, "unit_amount": "2"}, {"up_to": None, "unit_amount": "1"}]},
            ),
            11,
            None,
        ),
        (
            model(
                "graduated",
                {"tiers": [{"up_to": 10, "unit_amount": "2"}, {"up_to": None, "unit_amount": "2.00"}]},
            ),
            11,
            D(2),
        ),
        (GRADUATED, 5, None),
        (
            model(
                "volume", {"tiers": [{"up_to": 10, "unit_amount": "2"}, {"up_to": None, "unit_amount": "1"}]}
            ),
            11,
            D(1),
        ),
        (VOLUME, 11, None),
        (model("package", {"package_size": 1, "package_amount": "3"}), 4, D(3)),
        (model("package", {"package_size": 1, "package_amount": "3"}), D("4.5"), None),
        (model("package", {"package_size": 1, "package_amount": "3", "free_units": 1}), 4, None),
        (model("package", {"package_size": 2, "package_amount": "3"}), 4, None),
    ],
)
def test_unit_amount_only_when_one_price_applies_to_every_unit(
    price: pricing.PriceModel, quantity: int | Decimal, unit_amount: Decimal | None
) -> None:
    rating = rate_usd(price, quantity)
    assert rating.unit_amount == unit_amount
    if unit_amount is not None:
        assert rating.amount == money.round_half_up_to_minor(Fraction(quantity) * Fraction(unit_amount), USD)


def test_prices_keep_their_written_precision_in_descriptions() -> None:
    assert rate_usd(PerUnit(amount=D("5")), 1).description == "1 unit at $5.00"
    assert rate_usd(PerUnit(amount=D("0.000125")), 8000).description == "8,000 units at $0.000125"
    assert rate_usd(PerUnit(amount=D("1234.5")), D("1.5")).description == "1.5 units at $1,234.50"


@pytest.mark.parametrize(
    ("label", "one"),
    [
        ("calls", "call"),
        ("queries", "query"),
        ("messages", "message"),
        ("boxes", "box"),
        ("GB", "GB"),
        ("addresses", "address"),
    ],
)
def test_one_unit_reads_in_the_singular(label: str, one: str) -> None:
    rating = pricing.rate(PerUnit(amount=D(1)), quantity=1, currency=USD, unit_label=label)
    assert rating.description == f"1 {one} at $1.00"


# --- percentage events -------------------------------------------------------------------


def rate_events(price: Percentage, values: list[int | str], **kwargs: object) -> pricing.Rating:
    return pricing.rate_events(
        price,
        amounts=[D(v) for v in values],
        currency=USD,
        unit_label="transactions",
        **kwargs,  # type: ignore[arg-type]
    )


def test_free_amount_the_crossing_event_pays_on_the_part_above() -> None:
    price = percent(rate="10", free_amount="250")
    crossing = rate_events(price, [200, 100])
    assert crossing.amount == D("5.00")  # 10% of the 50 above the free 250
    assert descriptions(crossing) == [
        "1 free transaction within the first $250.00",
        "1 transaction: 10% of $50.00",
    ]
    assert rate_events(price, [200, 50]).amount == D("0.00")  # exactly at the allowance: free
    assert rate_events(price, [200, 50, 10]).amount == D("1.00")
    assert rate_events(price, [300]).amount == D("5.00")
    with_fee = percent(rate="10", fixed_amount="0.25", free_amount="250")
    assert rate_events(with_fee, [200, 100]).amount == D("5.25")  # the crossing event pays its fixed fee


def test_with_both_allowances_free_ends_at_whichever_is_reached_first() -> None:
    count_first = percent(rate="10", free_events=2, free_amount="1000")
    assert rate_events(count_first, [100, 100, 100]).amount == D("10.00")
    amount_first = percent(rate="10", free_events=5, free_amount="150")
    assert rate_events(amount_first, [100, 100, 100]).amount == D("15.00")  # 5 + 10


def test_event_fees_are_held_within_the_per_event_bounds() -> None:
    price = percent(rate="1", event_minimum="0.30", event_maximum="2.00")
    rating = rate_events(price, [10, 100, 1000])
    assert rating.amount == D("3.30")  # 0.30 (raised from 0.10) + 1.00 + 2.00 (lowered from 10)
    assert descriptions(rating) == [
        "1 transaction: 1% of $100.00",
        "1 transaction at the $0.30 minimum fee",
        "1 transaction at the $2.00 maximum fee",
    ]
    assert [line.unit_amount for line in rating.lines] == [None, D("0.30"), D("2.00")]
    free_first = percent(rate="1", event_minimum="0.30", free_events=1)
    assert rate_events(free_first, [10, 10]).amount == D("0.30")  # a free event is not raised


def test_no_events_and_only_free_events() -> None:
    nothing = rate_events(PERCENTAGE, [])
    assert nothing.amount == D("0.00")
    assert nothing.quantity == D(0)
    assert descriptions(nothing) == ["0 transactions"]
    all_free = rate_events(PERCENTAGE, [5, 6])
    assert descriptions(all_free) == ["2 free transactions"]
    assert all_free.amount == D("0.00")


def test_percentage_minimum_and_maximum() -> None:
    price = percent(rate="10")
    capped = rate_events(price, [1000], maximum=D(50))
    assert capped.amount == D("50.00")
    assert capped.capped
    short = rate_events(price, [10], minimum=D(5), proration=Fraction(1, 2))
    assert short.minimum_true_up == D("1.50")


def test_events_keep_time_order_for_allowances() -> None:
    price = percent(rate="10", free_amount="100")
    assert rate_events(price, [100, 50]).amount == D("5.00")
    assert rate_events(price, [50, 100]).amount == D("5.00")  # the crossing event pays on 50
    assert rate_events(percent(rate="10", free_events=1), [100, 50]).amount == D("5.00")
    assert rate_events(percent(rate="10", free_events=1), [50, 100]).amount == D("10.00")


def test_wrong_rating_function_is_refused() -> None:
    with pytest.raises(pricing.WrongRatingFunction) as raised:
        rate_usd(PERCENTAGE, 1)
    assert raised.value.field == "/model"
    with pytest.raises(pricing.WrongRatingFunction):
        pricing.rate_events(
            PerUnit(amount=D(1)),  # type: ignore[arg-type]
            amounts=[D(1)],
            currency=USD,
            unit_label="units",
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"quantity": D(-1)}, pricing.NegativeQuantity, "/quantity"),
        ({"quantity": Fraction(-1, 3)}, pricing.NegativeQuantity, "/quantity"),
        ({"quantity": 1.5}, money.InvalidNumber, "/quantity"),
        ({"quantity": True}, money.InvalidNumber, "/quantity"),
        ({"quantity": D("NaN")}, money.InvalidNumber, "/quantity"),
        ({"proration": Fraction(0)}, pricing.InvalidProration, "/proration"),
        ({"proration": Fraction(3, 2)}, pricing.InvalidProration, "/proration"),
        ({"proration": D("0.5")}, pricing.InvalidProration, "/proration"),
        ({"minimum": D(-1)}, pricing.NegativeAmount, "/minimum"),
        ({"maximum": D(-1)}, pricing.NegativeAmount, "/maximum"),
        ({"minimum": D(10), "maximum": D(5)}, pricing.InvalidBounds, "/maximum"),
        ({"currency": "USD"}, money.UnknownCurrency, "/currency"),
        ({"unit_label": " "}, codes.InvalidValue, "/unit_label"),
    ],
)
def test_rating_refuses_bad_arguments_naming_them(
    kwargs: dict[str, object], error: type[InvalidInput], field: str
) -> None:
    arguments: dict[str, object] = {"quantity": D(1), "currency": USD, "unit_label": "units", **kwargs}
    with pytest.raises(error) as raised:
        pricing.rate(PerUnit(amount=D(1)), **arguments)  # type: ignore[arg-type]
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("values", "error", "field"),
    [
        ([D(1), D(-1)], pricing.NegativeAmount, "/amounts/1"),
        ([D(1), 1.5], money.InvalidNumber, "/amounts/1"),
        ([D("Infinity")], money.InvalidNumber, "/amounts/0"),
    ],
)
def test_rate_events_refuses_bad_amounts(values: list[object], error: type[InvalidInput], field: str) -> None:
    with pytest.raises(error) as raised:
        pricing.rate_events(PERCENTAGE, amounts=values, currency=USD, unit_label="transactions")  # type: ignore[arg-type]
    assert raised.value.field == field


# --- parsing and validation --------------------------------------------------------------

CHARGE = "/charges/2"


def tiers(*bounds: object) -> list[dict[str, object]]:
    return [{"up_to": bound, "unit_amount": "1"} for bound in bounds]


@pytest.mark.parametrize(
    ("kind", "params", "error", "field"),
    [
        ("tiered", {"amount": "1"}, pricing.UnknownPriceModel, "/model"),
        ("flat", {}, codes.MissingField, "/amount"),
        ("flat", {"amount": None}, codes.MissingField, "/amount"),
        ("per_unit", {}, codes.MissingField, "/amount"),
        ("graduated", {}, codes.MissingField, "/tiers"),
        ("volume", {}, codes.MissingField, "/tiers"),
        ("package", {"package_amount": "5"}, codes.MissingField, "/package_size"),
        ("package", {"package_size": "5"}, codes.MissingField, "/package_amount"),
        ("percentage", {"fixed_amount": "1"}, codes.MissingField, "/rate"),
        ("per_unit", {"amount": "1", "tiers": []}, pricing.FieldNotAllowed, "/tiers"),
        ("flat", {"amount": "1", "free_units": "3"}, pricing.FieldNotAllowed, "/free_units"),
        ("volume", {"tiers": tiers(None), "rate": "1"}, pricing.FieldNotAllowed, "/rate"),
        ("flat", {"amount": "1", "colour": "red"}, codes.UnknownField, "/colour"),
        ("flat", {"amount": "1", "a/b~c": 1}, codes.UnknownField, "/a~1b~0c"),
        ("flat", {"amount": "-1"}, pricing.NegativeAmount, "/amount"),
        ("per_unit", {"amount": "abc"}, money.InvalidNumber, "/amount"),
        ("per_unit", {"amount": 0.5}, money.InvalidNumber, "/amount"),
        ("per_unit", {"amount": True}, money.InvalidNumber, "/amount"),
        ("per_unit", {"amount": [1]}, money.InvalidNumber, "/amount"),
        ("graduated", {"tiers": []}, pricing.NoTiers, "/tiers"),
        ("graduated", {"tiers": "1-10"}, codes.InvalidValue, "/tiers"),
        ("graduated", {"tiers": ["x"]}, codes.InvalidValue, "/tiers/0"),
        ("graduated", {"tiers": tiers(0, None)}, pricing.OutOfRange, "/tiers/0/up_to"),
        ("graduated", {"tiers": tiers(-5, None)}, pricing.OutOfRange, "/tiers/0/up_to"),
        ("graduated", {"tiers": tiers(10, 10, None)}, pricing.UnorderedTiers, "/tiers/1/up_to"),
        ("volume", {"tiers": tiers(10, 5, None)}, pricing.UnorderedTiers, "/tiers/1/up_to"),
        ("graduated", {"tiers": tiers(None, 10, None)}, pricing.UnboundedTierNotLast, "/tiers/0/up_to"),
        ("graduated", {"tiers": tiers(10, 20)}, pricing.BoundedLastTier, "/tiers/1/up_to"),
        ("volume", {"tiers": tiers(10)}, pricing.BoundedLastTier, "/tiers/0/up_to"),
        ("graduated", {"tiers": [{"unit_amount": "1"}]}, codes.MissingField, "/tiers/0/up_to"),
        ("graduated", {"tiers": [{"up_to": None}]}, codes.MissingField, "/tiers/0/unit_amount"),
        (
            "graduated",
            {"tiers": [{"up_to": None, "unit_amount": "-1"}]},
            pricing.NegativeAmount,
            "/tiers/0/unit_amount",
        ),
        (
            "graduated",
            {"tiers": [{"up_to": None, "unit_amount": "1", "flat_amount": "-2"}]},
            pricing.NegativeAmount,
            "/tiers/0/flat_amount",
        ),
        (
            "graduated",
            {"tiers": [{"up_to": None, "unit_amount": "1", "to": 3}]},
            codes.UnknownField,
            "/tiers/0/to",
        ),
        (
            "graduated",
            {"tiers": [{"from": 1, "up_to": 10, "unit_amount": "1"}, {"up_to": None, "unit_amount": "1"}]},
            pricing.TierGap,
            "/tiers/0/from",
        ),
        (
            "graduated",
            {"tiers": [{"up_to": 10, "unit_amount": "1"}, {"from": 11, "up_to": None, "unit_amount": "1"}]},
            pricing.TierGap,
            "/tiers/1/from",
        ),
        (
            "volume",
            {"tiers": [{"up_to": 10, "unit_amount": "1"}, {"from": 9, "up_to": None, "unit_amount": "1"}]},
            pricing.TierOverlap,
            "/tiers/1/from",
        ),
        ("package", {"package_size": 0, "package_amount": "5"}, pricing.OutOfRange, "/package_size"),
        ("package", {"package_size": -1, "package_amount": "5"}, pricing.OutOfRange, "/package_size"),
        ("package", {"package_size": 1, "package_amount": "-5"}, pricing.NegativeAmount, "/package_amount"),
        (
            "package",
            {"package_size": 1, "package_amount": "5", "free_units": -1},
            pricing.OutOfRange,
            "/free_units",
        ),
        ("percentage", {"rate": "100.01"}, pricing.OutOfRange, "/rate"),
        ("percentage", {"rate": "-1"}, pricing.OutOfRange, "/rate"),
        ("percentage", {"rate": "1", "fixed_amount": "-0.1"}, pricing.NegativeAmount, "/fixed_amount"),
        ("percentage", {"rate": "1", "free_events": -1}, codes.InvalidValue, "/free_events"),
        ("percentage", {"rate": "1", "free_events": "3"}, codes.InvalidValue, "/free_events"),
        ("percentage", {"rate": "1", "free_events": True}, codes.InvalidValue, "/free_events"),
        ("percentage", {"rate": "1", "free_amount": "-1"}, pricing.NegativeAmount, "/free_amount"),
        ("percentage", {"rate": "1", "event_minimum": "-1"}, pricing.NegativeAmount, "/event_minimum"),
        ("percentage", {"rate": "1", "event_maximum": "-1"}, pricing.NegativeAmount, "/event_maximum"),
        (
            "percentage",
            {"rate": "1", "event_minimum": "2", "event_maximum": "1"},
            pricing.InvalidBounds,
            "/event_maximum",
        ),
    ],
)
def test_price_model_rules_name_the_offending_field(
    kind: str, params: dict[str, object], error: type[InvalidInput], field: str
) -> None:
    with pytest.raises(error) as raised:
        pricing.parse_price_model(kind, params, pointer=CHARGE)
    assert raised.value.field == CHARGE + field
    assert isinstance(raised.value, InvalidInput)


def test_valid_edge_parameters_are_accepted() -> None:
    assert model("percentage", {"rate": "100"}) == Percentage(
        rate=D(100),
        fixed_amount=D(0),
        free_events=0,
        free_amount=None,
        event_minimum=None,
        event_maximum=None,
    )
    assert model("percentage", {"rate": 0, "free_amount": 0, "event_minimum": "1", "event_maximum": "1"})
    assert model("flat", {"amount": 0}) == Flat(amount=D(0))
    assert model("flat", {"amount": "-0"}) == Flat(amount=D(0))
    assert str(model("flat", {"amount": "-0"}).to_spec()["amount"]) == "0"
    assert model("per_unit", {"amount": D("0.0006")}) == PerUnit(amount=D("0.0006"))
    chained = model(
        "graduated",
        {
            "tiers": [
                {"from": 0, "up_to": "2.5", "unit_amount": "1"},
                {"from": "2.50", "up_to": None, "unit_amount": "1"},
            ]
        },
    )
    assert chained == Graduated(
        tiers=(
            Tier(up_to=D("2.5"), unit_amount=D(1), flat_amount=D(0)),
            Tier(up_to=None, unit_amount=D(1), flat_amount=D(0)),
        )
    )


def test_models_built_directly_check_themselves() -> None:
    with pytest.raises(pricing.OutOfRange) as raised:
        Package(package_size=D(0), package_amount=D(1), free_units=D(0))
    assert raised.value.field == "/package_size"
    with pytest.raises(pricing.BoundedLastTier):
        Volume(tiers=(Tier(up_to=D(1), unit_amount=D(1), flat_amount=D(0)),))
    with pytest.raises(codes.InvalidValue):
        Flat(amount=1.5)  # type: ignore[arg-type]


PARAMS_BY_KIND: list[tuple[str, dict[str, object]]] = [
    ("flat", {"amount": "50.00"}),
    ("per_unit", {"amount": "0.0006"}),
    ("graduated", GRADUATED_SPEC),
    ("volume", VOLUME_SPEC),
    ("package", PACKAGE_SPEC),
    ("package", {"package_size": "2.5", "package_amount": "1E+3"}),
    ("percentage", PERCENTAGE_SPEC),
    ("percentage", {"rate": "2.90", "free_amount": "100.00", "event_minimum": "0.30", "event_maximum": "5"}),
]


@pytest.mark.parametrize(("kind", "params"), PARAMS_BY_KIND)
def test_model_spec_round_trips(kind: str, params: dict[str, object]) -> None:
    price = model(kind, params)
    spec = price.to_spec()
    assert price.kind == kind
    assert model(kind, spec) == price
    assert model(kind, spec).to_spec() == spec


def test_spec_keeps_the_written_precision_and_fills_defaults() -> None:
    assert model("per_unit", {"amount": "0.0600"}).to_spec() == {"amount": "0.0600"}
    assert model("per_unit", {"amount": 2}).to_spec() == {"amount": "2"}
    assert model("package", {"package_size": "1E+2", "package_amount": "5"}).to_spec() == {
        "package_size": "100",
        "package_amount": "5",
        "free_units": "0",
    }
    assert PERCENTAGE.to_spec() == {
        "rate": "1.2",
        "fixed_amount": "0.10",
        "free_events": 3,
        "free_amount": None,
        "event_minimum": None,
        "event_maximum": None,
    }
    assert GRADUATED.to_spec() == {
        "tiers": [
            {"up_to": "10", "unit_amount": "10", "flat_amount": "2"},
            {"up_to": None, "unit_amount": "5", "flat_amount": "3"},
        ]
    }


# --- charges -----------------------------------------------------------------------------


def test_scenario_charges_parse_with_their_defaults() -> None:
    base = pricing.parse_charge({"code": "base", "model": "flat", "amount": "50.00"}, pointer="/charges/0")
    assert base == ChargeDefinition(
        code="base",
        name="base",
        model=Flat(amount=D("50.00")),
        timing=ChargeTiming.IN_ADVANCE,
        meter=None,
        minimum=None,
        maximum=None,
        tax_rates=(),
    )
    assert not base.metered
    calls = pricing.parse_charge(
        {"code": "calls", "meter": "api_calls", "model": "graduated", **GRADUATED_SPEC}, pointer="/charges/1"
    )
    assert calls.timing is ChargeTiming.IN_ARREARS
    assert calls.model == GRADUATED
    assert calls.metered
    arrears_fee = pricing.parse_charge(
        {"code": "support", "name": "Support", "model": "flat", "amount": "10", "timing": "in_arrears"},
        pointer="",
    )
    assert arrears_fee.timing is ChargeTiming.IN_ARREARS
    assert arrears_fee.name == "Support"


def test_charge_spec_round_trips() -> None:
    charge = pricing.parse_charge(
        {
            "code": "txn",
            "name": "Card fees",
            "model": "percentage",
            "meter": "payments",
            "minimum": "5.00",
            "maximum": "500",
            "tax_rates": ["VAT20"],
            **PERCENTAGE_SPEC,
        },
        pointer="",
    )
    spec = charge.to_spec()
    assert spec == {
        "code": "txn",
        "name": "Card fees",
        "model": "percentage",
        "rate": "1.2",
        "fixed_amount": "0.10",
        "free_events": 3,
        "free_amount": None,
        "event_minimum": None,
        "event_maximum": None,
        "timing": "in_arrears",
        "meter": "payments",
        "minimum": "5.00",
        "maximum": "500",
        "tax_rates": ["VAT20"],
    }
    assert pricing.parse_charge(spec, pointer="") == charge
    for kind, params in PARAMS_BY_KIND:
        meter = None if kind == "flat" else "m"
        original = pricing.parse_charge({"code": "c", "model": kind, "meter": meter, **params}, pointer="")
        assert pricing.parse_charge(original.to_spec(), pointer="") == original


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        ({"model": "flat", "amount": "1"}, codes.MissingField, "/code"),
        ({"code": "-x", "model": "flat", "amount": "1"}, codes.InvalidCode, "/code"),
        ({"code": "a b", "model": "flat", "amount": "1"}, codes.InvalidCode, "/code"),
        ({"code": "x" * 101, "model": "flat", "amount": "1"}, codes.InvalidCode, "/code"),
        ({"code": 7, "model": "flat", "amount": "1"}, codes.InvalidCode, "/code"),
        ({"code": "c"}, codes.MissingField, "/model"),
        ({"code": "c", "model": "tiered"}, pricing.UnknownPriceModel, "/model"),
        ({"code": "c", "model": 3}, pricing.UnknownPriceModel, "/model"),
        ({"code": "c", "model": "flat", "amount": "1", "meter": "m"}, pricing.FieldNotAllowed, "/meter"),
        ({"code": "c", "model": "flat", "amount": "1", "minimum": "1"}, pricing.FieldNotAllowed, "/minimum"),
        ({"code": "c", "model": "flat", "amount": "1", "maximum": "1"}, pricing.FieldNotAllowed, "/maximum"),
        ({"code": "c", "model": "per_unit", "amount": "1"}, codes.MissingField, "/meter"),
        ({"code": "c", "model": "percentage", "rate": "1"}, codes.MissingField, "/meter"),
        (
            {"code": "c", "model": "per_unit", "amount": "1", "meter": "bad meter"},
            codes.InvalidCode,
            "/meter",
        ),
        (
            {"code": "c", "model": "per_unit", "amount": "1", "meter": "m", "timing": "in_advance"},
            pricing.InvalidTiming,
            "/timing",
        ),
        (
            {"code": "c", "model": "flat", "amount": "1", "timing": "monthly"},
            pricing.InvalidTiming,
            "/timing",
        ),
        (
            {"code": "c", "model": "per_unit", "amount": "1", "meter": "m", "minimum": "-1"},
            pricing.NegativeAmount,
            "/minimum",
        ),
        (
            {"code": "c", "model": "per_unit", "amount": "1", "meter": "m", "maximum": "x"},
            money.InvalidNumber,
            "/maximum",
        ),
        (
            {"code": "c", "model": "per_unit", "amount": "1", "meter": "m", "minimum": "10", "maximum": "5"},
            pricing.InvalidBounds,
            "/maximum",
        ),
        ({"code": "c", "model": "flat", "amount": "1", "colour": "red"}, codes.UnknownField, "/colour"),
        (
            {"code": "c", "model": "per_unit", "amount": "1", "meter": "m", "tiers": []},
            pricing.FieldNotAllowed,
            "/tiers",
        ),
        ({"code": "c", "model": "flat", "amount": "1", "name": ""}, codes.InvalidValue, "/name"),
        ({"code": "c", "model": "flat", "amount": "1", "tax_rates": "VAT"}, codes.InvalidValue, "/tax_rates"),
        (
            {"code": "c", "model": "flat", "amount": "1", "tax_rates": ["V", "V"]},
            codes.InvalidValue,
            "/tax_rates/1",
        ),
        (
            {"code": "c", "model": "flat", "amount": "1", "tax_rates": ["ok", "n o"]},
            codes.InvalidCode,
            "/tax_rates/1",
        ),
        (
            {"code": "c", "model": "graduated", "meter": "m", "tiers": tiers(5, 1, None)},
            pricing.UnorderedTiers,
            "/tiers/1/up_to",
        ),
    ],
)
def test_charge_rules_name_the_offending_field(
    spec: dict[str, object], error: type[InvalidInput], field: str
) -> None:
    with pytest.raises(error) as raised:
        pricing.parse_charge(spec, pointer=CHARGE)
    assert raised.value.field == CHARGE + field


def test_charge_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(codes.InvalidValue) as raised:
        pricing.parse_charge(["flat"], pointer=CHARGE)  # type: ignore[arg-type]
    assert raised.value.field == CHARGE


def test_charges_refuse_a_duplicate_code_naming_the_second() -> None:
    specs: list[Mapping[str, object]] = [
        {"code": "base", "model": "flat", "amount": "1"},
        {"code": "calls", "model": "per_unit", "amount": "1", "meter": "m"},
        {"code": "base", "model": "flat", "amount": "2"},
    ]
    with pytest.raises(pricing.DuplicateCode) as raised:
        pricing.parse_charges(specs, pointer="/plans/0/charges")
    assert raised.value.field == "/plans/0/charges/2/code"
    parsed = pricing.parse_charges(specs[:2], pointer="/plans/0/charges")
    assert [charge.code for charge in parsed] == ["base", "calls"]
    with pytest.raises(pricing.UnknownPriceModel) as bad:
        pricing.parse_charges([*specs[:2], {"code": "x", "model": "nope"}], pointer="/plans/0/charges")
    assert bad.value.field == "/plans/0/charges/2/model"
    with pytest.raises(codes.InvalidValue) as not_a_list:
        pricing.parse_charges("base", pointer="/plans/0/charges")  # type: ignore[arg-type]
    assert not_a_list.value.field == "/plans/0/charges"


# --- properties --------------------------------------------------------------------------

currencies = st.sampled_from([JPY, USD, KWD, BHD])
prices = st.builds(lambda units, places: D(units).scaleb(-places), st.integers(0, 10**6), st.integers(0, 4))
quantities = st.one_of(
    st.builds(lambda units, places: D(units).scaleb(-places), st.integers(0, 10**7), st.integers(0, 3)),
    st.fractions(min_value=0, max_value=10**5, max_denominator=1000),
)
prorations = st.fractions(min_value=0, max_value=1, max_denominator=10**6).filter(lambda p: p > 0)


@st.composite
def tier_lists(draw: st.DrawFn) -> tuple[Tier, ...]:
    bounds = sorted(
        draw(
            st.sets(
                st.builds(
                    lambda units, places: D(units).scaleb(-places), st.integers(1, 10**6), st.integers(0, 2)
                ),
                max_size=4,
            )
        )
    )
    return tuple(
        Tier(
            up_to=bound,
            unit_amount=draw(prices),
            flat_amount=draw(st.sampled_from([D(0), D(0), draw(prices)])),
        )
        for bound in [*bounds, None]
    )


packages = st.builds(
    Package,
    package_size=st.builds(
        lambda units, places: D(units).scaleb(-places), st.integers(1, 10**4), st.integers(0, 2)
    ),
    package_amount=prices,
    free_units=st.one_of(
        st.just(D(0)), quantities.map(lambda q: D(q) if isinstance(q, Decimal) else D(int(q)))
    ),
)
quantity_models = st.one_of(
    st.builds(Flat, amount=prices),
    st.builds(PerUnit, amount=prices),
    st.builds(Graduated, tiers=tier_lists()),
    st.builds(Volume, tiers=tier_lists()),
    packages,
)
optional_limits = st.one_of(st.none(), prices)
percentages = st.builds(
    Percentage,
    rate=st.builds(
        lambda units, places: D(units).scaleb(-places), st.integers(0, 100), st.integers(0, 2)
    ).filter(lambda rate: rate <= 100),
    fixed_amount=st.one_of(st.just(D(0)), prices),
    free_events=st.integers(0, 5),
    free_amount=optional_limits,
    event_minimum=st.none(),
    event_maximum=st.none(),
)
event_amounts = st.lists(st.builds(lambda units: D(units).scaleb(-2), st.integers(0, 10**7)), max_size=12)


def reference_graduated(tier_list: tuple[Tier, ...], quantity: Fraction) -> Fraction:
    total, lower = Fraction(0), Fraction(0)
    for tier in tier_list:
        if quantity > lower:
            top = quantity if tier.up_to is None else min(quantity, Fraction(tier.up_to))
            total += (top - lower) * Fraction(tier.unit_amount) + Fraction(tier.flat_amount)
        if tier.up_to is not None:
            lower = Fraction(tier.up_to)
    return total


@settings(max_examples=150, deadline=None)
@given(
    price=quantity_models,
    quantity=quantities,
    currency=currencies,
    limits=st.tuples(optional_limits, optional_limits),
    proration=prorations,
)
def test_lines_sum_exactly_to_the_amount_on_the_minor_unit(
    price: pricing.PriceModel,
    quantity: Decimal | Fraction,
    currency: money.Currency,
    limits: tuple[Decimal | None, Decimal | None],
    proration: Fraction,
) -> None:
    minimum, maximum = limits
    if minimum is not None and maximum is not None and minimum > maximum:
        minimum, maximum = maximum, minimum
    rating = pricing.rate(
        price,
        quantity=quantity,
        currency=currency,
        unit_label="units",
        proration=proration,
        minimum=minimum,
        maximum=maximum,
    )
    assert_well_formed(rating, currency)
    assert rating.amount >= 0
    if maximum is not None:
        assert rating.amount <= money.round_half_up_to_minor(Fraction(maximum) * proration, currency)
    if minimum is not None:
        floor = money.round_half_up_to_minor(Fraction(minimum) * proration, currency)
        assert money.to_minor_units(rating.amount, currency) + money.to_minor_units(
            rating.minimum_true_up, currency
        ) >= money.to_minor_units(floor, currency)
    if not rating.capped:
        # Only a cap makes a negative line.
        assert all(line.amount >= 0 for line in rating.lines)


@settings(max_examples=150, deadline=None)
@given(tier_list=tier_lists(), first=quantities, second=quantities, currency=currencies)
def test_graduated_totals_are_monotonic_and_match_the_tier_formula(
    tier_list: tuple[Tier, ...],
    first: Decimal | Fraction,
    second: Decimal | Fraction,
    currency: money.Currency,
) -> None:
    low, high = sorted([Fraction(first), Fraction(second)])
    price = Graduated(tiers=tier_list)
    low_rating = pricing.rate(price, quantity=low, currency=currency, unit_label="units")
    high_rating = pricing.rate(price, quantity=high, currency=currency, unit_label="units")
    assert low_rating.amount <= high_rating.amount
    assert low_rating.amount == money.round_half_up_to_minor(reference_graduated(tier_list, low), currency)


@settings(max_examples=150, deadline=None)
@given(tier_list=tier_lists(), quantity=quantities, currency=currencies)
def test_volume_total_is_quantity_times_the_containing_tier_plus_its_flat_fee(
    tier_list: tuple[Tier, ...], quantity: Decimal | Fraction, currency: money.Currency
) -> None:
    q = Fraction(quantity)
    containing = next(tier for tier in tier_list if tier.up_to is None or q <= Fraction(tier.up_to))
    exact = q * Fraction(containing.unit_amount) + Fraction(containing.flat_amount)
    rating = pricing.rate(Volume(tiers=tier_list), quantity=quantity, currency=currency, unit_label="units")
    assert rating.amount == money.round_half_up_to_minor(exact, currency)
    assert rating.lines[0].unit_amount == containing.unit_amount


@settings(max_examples=150, deadline=None)
@given(
    price=packages,
    steps=st.integers(0, 50),
    offsets=st.lists(
        st.fractions(min_value=0, max_value=1, max_denominator=1000).filter(lambda f: f > 0),
        min_size=2,
        max_size=4,
    ),
    currency=currencies,
)
def test_package_totals_are_steps_between_multiples_of_the_package_size(
    price: Package, steps: int, offsets: list[Fraction], currency: money.Currency
) -> None:
    size, free = Fraction(price.package_size), Fraction(price.free_units)
    expected = money.round_half_up_to_minor((steps + 1) * Fraction(price.package_amount), currency)
    for offset in offsets:
        quantity = free + (steps + offset) * size
        assert (
            pricing.rate(price, quantity=quantity, currency=currency, unit_label="units").amount == expected
        )
    assert pricing.rate(price, quantity=free, currency=currency, unit_label="units").amount == 0


@settings(max_examples=150, deadline=None)
@given(
    price=percentages,
    values=event_amounts,
    currency=currencies,
    bounds=st.tuples(optional_limits, optional_limits),
)
def test_percentage_without_allowances_is_the_sum_of_per_event_fees(
    price: Percentage,
    values: list[Decimal],
    currency: money.Currency,
    bounds: tuple[Decimal | None, Decimal | None],
) -> None:
    low, high = bounds
    if low is not None and high is not None and low > high:
        low, high = high, low
    price = Percentage(
        rate=price.rate,
        fixed_amount=price.fixed_amount,
        free_events=0,
        free_amount=None,
        event_minimum=low,
        event_maximum=high,
    )
    fees = Fraction(0)
    for value in values:
        fee = Fraction(price.rate) / 100 * Fraction(value) + Fraction(price.fixed_amount)
        if low is not None:
            fee = max(fee, Fraction(low))
        if high is not None:
            fee = min(fee, Fraction(high))
        fees += fee
    rating = pricing.rate_events(price, amounts=values, currency=currency, unit_label="transactions")
    assert rating.amount == money.round_half_up_to_minor(fees, currency)
    assert rating.quantity == sum(values, D(0))
    assert_well_formed(rating, currency)


@settings(max_examples=150, deadline=None)
@given(price=percentages, values=event_amounts, currency=currencies)
def test_percentage_lines_sum_and_free_allowances_only_lower_the_amount(
    price: Percentage, values: list[Decimal], currency: money.Currency
) -> None:
    rating = pricing.rate_events(price, amounts=values, currency=currency, unit_label="transactions")
    assert_well_formed(rating, currency)
    without_allowances = Percentage(
        rate=price.rate,
        fixed_amount=price.fixed_amount,
        free_events=0,
        free_amount=None,
        event_minimum=None,
        event_maximum=None,
    )
    full = pricing.rate_events(
        without_allowances, amounts=values, currency=currency, unit_label="transactions"
    )
    assert rating.amount <= full.amount


@settings(max_examples=100, deadline=None)
@given(price=st.one_of(quantity_models, percentages))
def test_every_model_spec_round_trips(price: pricing.PriceModel) -> None:
    assert pricing.parse_price_model(price.kind, price.to_spec(), pointer="") == price
