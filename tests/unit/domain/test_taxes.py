"""Tax rates and the tax on each invoice line."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accrual.domain import codes, money, taxes
from accrual.domain.errors import InvalidInput
from accrual.domain.taxes import TaxRate

USD = money.currency("USD")
JPY = money.currency("JPY")
KWD = money.currency("KWD")
D = Decimal


def tax_rate(rate: str, *, inclusive: bool = False, code: str = "T") -> TaxRate:
    return TaxRate(code=code, name=code, rate=D(rate), inclusive=inclusive)


VAT20_INCLUSIVE = tax_rate("20", inclusive=True, code="VAT20")
TEN = tax_rate("10", code="TEN")


def test_golden_inclusive_tax_is_already_in_the_amount() -> None:
    assert taxes.line_tax(amount=D("12.00"), rate=VAT20_INCLUSIVE, currency=USD) == D("2.00")


def test_golden_exclusive_tax_is_added_on_top() -> None:
    assert taxes.line_tax(amount=D("60.00"), rate=TEN, currency=USD) == D("6.00")
    assert taxes.line_tax(amount=D(60), rate=TEN, currency=USD) == D("6.00")


def test_tax_is_rounded_once_half_away_from_zero() -> None:
    assert taxes.line_tax(amount=D("0.05"), rate=TEN, currency=USD) == D("0.01")  # 0.005
    assert taxes.line_tax(amount=D("-0.05"), rate=TEN, currency=USD) == D("-0.01")
    assert taxes.line_tax(amount=D("0.04"), rate=TEN, currency=USD) == D("0.00")
    assert taxes.line_tax(amount=D("10.00"), rate=tax_rate("8.875"), currency=USD) == D("0.89")  # 0.8875


def test_other_currencies() -> None:
    assert str(taxes.line_tax(amount=D(1005), rate=TEN, currency=JPY)) == "101"  # 100.5
    assert str(taxes.line_tax(amount=D("1.005"), rate=TEN, currency=KWD)) == "0.101"  # 0.1005
    assert str(taxes.line_tax(amount=D(1200), rate=VAT20_INCLUSIVE, currency=JPY)) == "200"


def test_zero_rate_and_zero_amount() -> None:
    assert taxes.line_tax(amount=D("99.99"), rate=tax_rate("0"), currency=USD) == D("0.00")
    assert taxes.line_tax(amount=D(0), rate=TEN, currency=USD) == D("0.00")
    assert taxes.line_tax(amount=D("50"), rate=tax_rate("100"), currency=USD) == D("50.00")


def test_several_rates_apply_to_the_same_base() -> None:
    state, city = tax_rate("6", code="STATE"), tax_rate("2.5", code="CITY")
    assert taxes.line_taxes(amount=D("100.00"), rates=[state, city], currency=USD) == [D("6.00"), D("2.50")]
    gst, pst = tax_rate("10", inclusive=True, code="GST"), tax_rate("5", inclusive=True, code="PST")
    # 115.00 contains a net 100.00 plus both taxes.
    assert taxes.line_taxes(amount=D("115.00"), rates=[gst, pst], currency=USD) == [D("10.00"), D("5.00")]
    assert taxes.line_taxes(amount=D("115.00"), rates=[], currency=USD) == []


def test_mixing_inclusive_and_exclusive_rates_on_a_line_is_refused() -> None:
    with pytest.raises(taxes.MixedTaxInclusion) as raised:
        taxes.line_taxes(amount=D(10), rates=[TEN, VAT20_INCLUSIVE], currency=USD)
    assert raised.value.field == "/rates"
    assert "TEN (exclusive)" in raised.value.detail


def test_a_rate_applied_twice_is_refused() -> None:
    with pytest.raises(taxes.DuplicateTaxRate) as raised:
        taxes.line_taxes(amount=D(10), rates=[TEN, tax_rate("5"), TEN], currency=USD)
    assert raised.value.field == "/rates/2"


@pytest.mark.parametrize("amount", [1.5, True, "10", D("NaN"), D("-Infinity")])
def test_amount_must_be_an_exact_number(amount: object) -> None:
    with pytest.raises(money.InvalidNumber) as raised:
        taxes.line_tax(amount=amount, rate=TEN, currency=USD)  # type: ignore[arg-type]
    assert raised.value.field == "/amount"


# --- parsing -----------------------------------------------------------------------------

POINTER = "/catalog/taxes/0"


def test_tax_rate_parses_with_defaults_and_round_trips() -> None:
    parsed = taxes.parse_tax_rate({"code": "VAT20", "rate": "20"}, pointer=POINTER)
    assert parsed == TaxRate(code="VAT20", name="VAT20", rate=D(20), inclusive=False)
    assert parsed.to_spec() == {"code": "VAT20", "name": "VAT20", "rate": "20", "inclusive": False}
    full = taxes.parse_tax_rate(
        {"code": "NYC", "name": "New York City", "rate": "8.875", "inclusive": True}, pointer=POINTER
    )
    assert full.to_spec() == {"code": "NYC", "name": "New York City", "rate": "8.875", "inclusive": True}
    assert taxes.parse_tax_rate(full.to_spec(), pointer="") == full
    assert taxes.parse_tax_rate({"code": "Z", "rate": 0, "inclusive": None}, pointer="").rate == D(0)
    assert taxes.parse_tax_rate({"code": "F", "rate": D("100.00")}, pointer="").to_spec()["rate"] == "100.00"


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        ({"code": "T", "rate": "20", "compound": True}, codes.UnknownField, "/compound"),
        ({"rate": "20"}, codes.MissingField, "/code"),
        ({"code": "T"}, codes.MissingField, "/rate"),
        ({"code": "T", "rate": None}, codes.MissingField, "/rate"),
        ({"code": "bad code", "rate": "20"}, codes.InvalidCode, "/code"),
        ({"code": "T", "name": "", "rate": "20"}, codes.InvalidValue, "/name"),
        ({"code": "T", "rate": "-1"}, taxes.TaxRateOutOfRange, "/rate"),
        ({"code": "T", "rate": "100.01"}, taxes.TaxRateOutOfRange, "/rate"),
        ({"code": "T", "rate": "twenty"}, money.InvalidNumber, "/rate"),
        ({"code": "T", "rate": 0.2}, money.InvalidNumber, "/rate"),
        ({"code": "T", "rate": True}, money.InvalidNumber, "/rate"),
        ({"code": "T", "rate": "20", "inclusive": "yes"}, codes.InvalidValue, "/inclusive"),
        ({"code": "T", "rate": "20", "inclusive": 1}, codes.InvalidValue, "/inclusive"),
    ],
)
def test_tax_rate_rules_name_the_offending_field(
    spec: dict[str, object], error: type[InvalidInput], field: str
) -> None:
    with pytest.raises(error) as raised:
        taxes.parse_tax_rate(spec, pointer=POINTER)
    assert raised.value.field == POINTER + field


# --- properties --------------------------------------------------------------------------

currencies = st.sampled_from([JPY, USD, KWD])
rates = st.builds(
    lambda units, places, inclusive: TaxRate(
        code="T", name="T", rate=D(units).scaleb(-places), inclusive=inclusive
    ),
    st.integers(0, 100),
    st.integers(0, 3),
    st.booleans(),
)
amounts = st.builds(lambda units, places: D(units).scaleb(-places), st.integers(0, 10**9), st.integers(0, 3))


@settings(max_examples=200, deadline=None)
@given(amount=amounts, rate=rates, currency=currencies)
def test_tax_is_symmetric_for_credits_and_lands_on_the_minor_unit(
    amount: Decimal, rate: TaxRate, currency: money.Currency
) -> None:
    positive = taxes.line_tax(amount=amount, rate=rate, currency=currency)
    negative = taxes.line_tax(amount=-amount, rate=rate, currency=currency)
    assert negative == -positive
    assert positive.as_tuple().exponent == -currency.exponent
    share = Fraction(rate.rate) / (100 + Fraction(rate.rate)) if rate.inclusive else Fraction(rate.rate) / 100
    assert positive == money.round_half_up_to_minor(Fraction(amount) * share, currency)
    if rate.inclusive:
        assert 0 <= positive <= money.round_half_up_to_minor(amount, currency)
