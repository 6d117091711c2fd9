"""Coupons: parsing, when they apply, and allocating a discount to invoice lines."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accrual.domain import clock, codes, discounts, money
from accrual.domain.discounts import Coupon, CouponDuration, CouponKind
from accrual.domain.errors import InvalidInput

USD = money.currency("USD")
EUR = money.currency("EUR")
JPY = money.currency("JPY")
KWD = money.currency("KWD")
D = Decimal
POINTER = "/catalog/coupons/1"


def coupon(**spec: object) -> Coupon:
    return discounts.parse_coupon(spec, pointer="")


WELCOME = coupon(code="WELCOME", kind="percentage", value="10", duration="once")
TEN_OFF = coupon(code="TENOFF", kind="fixed", value="10.00", currency="USD", duration="forever")


def allocate(
    given_coupon: Coupon,
    amounts: list[str],
    eligible: list[bool] | None = None,
    currency: money.Currency = USD,
) -> list[Decimal]:
    return discounts.allocate_discount(
        coupon=given_coupon,
        line_amounts=[D(a) for a in amounts],
        eligible=[True] * len(amounts) if eligible is None else eligible,
        currency=currency,
    )


# --- allocation --------------------------------------------------------------------------


def test_golden_fixed_discount_is_shared_by_largest_remainder() -> None:
    assert allocate(TEN_OFF, ["50.00", "20.00"]) == [D("7.14"), D("2.86")]


def test_percentage_discount_is_rounded_once_on_the_eligible_total() -> None:
    fifteen = coupon(code="P15", kind="percentage", value="15", duration="forever")
    # 0.99 × 15% = 0.1485 → 0.15, shared 0.05 each; per line it would be 3 × 0.05 too, but
    # 0.33 × 15% = 0.0495 rounds to 0.05 only by luck: the total is what is rounded.
    assert allocate(fifteen, ["0.33", "0.33", "0.33"]) == [D("0.05"), D("0.05"), D("0.05")]
    seven = coupon(code="P7", kind="percentage", value="7", duration="forever")
    # 0.07 each line, 0.21 total: 7% = 0.0147 → 0.01, not 3 × 0.00.
    assert sum(allocate(seven, ["0.07", "0.07", "0.07"])) == D("0.01")


def test_only_eligible_positive_lines_are_discounted() -> None:
    result = allocate(WELCOME, ["50.00", "20.00", "-5.00", "30.00", "0.00"], [True, True, True, False, True])
    assert result == [D("5.00"), D("2.00"), D("0.00"), D("0.00"), D("0.00")]
    assert all(value.as_tuple().exponent == -2 for value in result)
    assert allocate(WELCOME, ["50.00"], [False]) == [D("0.00")]
    assert allocate(WELCOME, []) == []
    assert allocate(WELCOME, ["-10.00"]) == [D("0.00")]


def test_fixed_discount_never_exceeds_the_eligible_amount() -> None:
    big = coupon(code="BIG", kind="fixed", value="100", duration="once")
    assert allocate(big, ["30.00", "20.00", "5.00"], [True, True, False]) == [
        D("30.00"),
        D("20.00"),
        D("0.00"),
    ]
    everything = coupon(code="ALL", kind="percentage", value="100", duration="once")
    assert allocate(everything, ["12.34", "0.01"]) == [D("12.34"), D("0.01")]


def test_other_currencies() -> None:
    no_currency = coupon(code="HALF", kind="fixed", value="10.5", duration="once")
    assert allocate(no_currency, ["100"], currency=JPY) == [D("11")]  # rounded half away from zero
    assert allocate(WELCOME, ["1.235", "0.500"], currency=KWD) == [D("0.124"), D("0.050")]


def test_a_fixed_coupon_in_another_currency_is_refused() -> None:
    euros = coupon(code="EURO", kind="fixed", value="5", currency="EUR", duration="once")
    with pytest.raises(money.CurrencyMismatch) as raised:
        allocate(euros, ["50.00"])
    assert raised.value.field == "/currency"
    assert allocate(euros, ["50.00"], currency=EUR) == [D("5.00")]
    assert not euros.applies_in(USD)
    assert euros.applies_in(EUR)
    assert WELCOME.applies_in(JPY)


def test_allocation_refuses_inconsistent_lines() -> None:
    with pytest.raises(discounts.MismatchedLines) as raised:
        discounts.allocate_discount(coupon=WELCOME, line_amounts=[D(1), D(2)], eligible=[True], currency=USD)
    assert raised.value.field == "/eligible"
    with pytest.raises(money.InexactAmount) as inexact:
        allocate(WELCOME, ["1.00", "1.005"])
    assert inexact.value.field == "/line_amounts/1"
    with pytest.raises(codes.InvalidValue) as flag:
        discounts.allocate_discount(
            coupon=WELCOME,
            line_amounts=[D(1)],
            eligible=[1],  # type: ignore[list-item]
            currency=USD,
        )
    assert flag.value.field == "/eligible/0"


currencies = st.sampled_from([JPY, USD, KWD])
line_units = st.lists(st.integers(-(10**6), 10**7), max_size=8)
coupons = st.one_of(
    st.builds(
        lambda value: Coupon(
            code="P",
            name="P",
            kind=CouponKind.PERCENTAGE,
            value=value,
            currency=None,
            duration=CouponDuration.FOREVER,
            periods=None,
            expires_at=None,
            max_redemptions=None,
            applies_to_plans=(),
            applies_to_charges=(),
        ),
        st.builds(lambda units: D(units).scaleb(-2), st.integers(1, 10000)),
    ),
    st.builds(
        lambda value: Coupon(
            code="F",
            name="F",
            kind=CouponKind.FIXED,
            value=value,
            currency=None,
            duration=CouponDuration.ONCE,
            periods=None,
            expires_at=None,
            max_redemptions=None,
            applies_to_plans=(),
            applies_to_charges=(),
        ),
        st.builds(lambda units, places: D(units).scaleb(-places), st.integers(1, 10**8), st.integers(0, 4)),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    given_coupon=coupons,
    units=line_units,
    flags=st.lists(st.booleans(), min_size=8, max_size=8),
    currency=currencies,
)
def test_discounts_sum_exactly_to_the_total_and_never_exceed_a_line(
    given_coupon: Coupon, units: list[int], flags: list[bool], currency: money.Currency
) -> None:
    amounts = [money.Money(minor=u, currency=currency).amount for u in units]
    eligible = flags[: len(units)]
    result = discounts.allocate_discount(
        coupon=given_coupon, line_amounts=amounts, eligible=eligible, currency=currency
    )
    assert len(result) == len(amounts)
    base = sum((Fraction(a) for a, e in zip(amounts, eligible, strict=True) if e and a > 0), Fraction(0))
    if given_coupon.kind is CouponKind.PERCENTAGE:
        expected = money.round_half_up_to_minor(base * Fraction(given_coupon.value) / 100, currency)
    else:
        expected = money.round_half_up_to_minor(min(Fraction(given_coupon.value), base), currency)
    assert sum(result, D(0)) == expected
    for amount, flag, discount in zip(amounts, eligible, result, strict=True):
        assert discount.as_tuple().exponent == -currency.exponent
        assert 0 <= discount <= max(amount, D(0))
        if not flag or amount <= 0:
            assert discount == 0


# --- coupons -----------------------------------------------------------------------------


def test_minimal_coupon_has_its_defaults() -> None:
    parsed = coupon(code="WELCOME", kind="percentage", value="10", duration="once")
    assert parsed == Coupon(
        code="WELCOME",
        name="WELCOME",
        kind=CouponKind.PERCENTAGE,
        value=D(10),
        currency=None,
        duration=CouponDuration.ONCE,
        periods=None,
        expires_at=None,
        max_redemptions=None,
        applies_to_plans=(),
        applies_to_charges=(),
    )


FULL_SPEC: dict[str, object] = {
    "code": "LAUNCH",
    "name": "Launch offer",
    "kind": "fixed",
    "value": "25.50",
    "currency": "USD",
    "duration": "repeating",
    "periods": 3,
    "expires_at": "2026-02-01T00:00:00+01:00",
    "max_redemptions": 100,
    "applies_to": {"plans": ["pro"], "charges": ["base", "seats"]},
}


def test_full_coupon_parses_and_round_trips() -> None:
    parsed = discounts.parse_coupon(FULL_SPEC, pointer=POINTER)
    assert parsed.currency == USD
    assert parsed.value == D("25.50")
    assert parsed.expires_at == dt.datetime(2026, 1, 31, 23, tzinfo=dt.UTC)
    assert parsed.applies_to_charges == ("base", "seats")
    spec = parsed.to_spec()
    assert spec == {**FULL_SPEC, "expires_at": "2026-01-31T23:00:00Z"}
    assert discounts.parse_coupon(spec, pointer="") == parsed
    assert discounts.parse_coupon(WELCOME.to_spec(), pointer="") == WELCOME
    assert WELCOME.to_spec()["applies_to"] == {"plans": [], "charges": []}


def test_expiry_may_be_an_aware_datetime_and_keeps_microseconds() -> None:
    instant = dt.datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    parsed = coupon(code="C", kind="percentage", value="5", duration="forever", expires_at=instant)
    assert parsed.expires_at == instant
    assert parsed.to_spec()["expires_at"] == "2026-03-01T17:30:15.250000Z"
    assert discounts.parse_coupon(parsed.to_spec(), pointer="") == parsed


BASE: dict[str, object] = {"code": "C", "kind": "percentage", "value": "10", "duration": "once"}
FIXED: dict[str, object] = {"code": "C", "kind": "fixed", "value": "10", "duration": "once"}


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        ({**BASE, "colour": "red"}, codes.UnknownField, "/colour"),
        ({k: v for k, v in BASE.items() if k != "code"}, codes.MissingField, "/code"),
        ({k: v for k, v in BASE.items() if k != "kind"}, codes.MissingField, "/kind"),
        ({k: v for k, v in BASE.items() if k != "value"}, codes.MissingField, "/value"),
        ({k: v for k, v in BASE.items() if k != "duration"}, codes.MissingField, "/duration"),
        ({**BASE, "code": "no spaces"}, codes.InvalidCode, "/code"),
        ({**BASE, "name": ""}, codes.InvalidValue, "/name"),
        ({**BASE, "kind": "bogo"}, codes.InvalidValue, "/kind"),
        ({**BASE, "duration": "weekly"}, codes.InvalidValue, "/duration"),
        ({**BASE, "value": "0"}, discounts.InvalidCouponValue, "/value"),
        ({**BASE, "value": "100.5"}, discounts.InvalidCouponValue, "/value"),
        ({**BASE, "value": "-5"}, discounts.InvalidCouponValue, "/value"),
        ({**BASE, "value": 0.5}, money.InvalidNumber, "/value"),
        ({**BASE, "value": "ten"}, money.InvalidNumber, "/value"),
        ({**BASE, "currency": "USD"}, codes.InvalidValue, "/currency"),
        ({**FIXED, "value": "0"}, discounts.InvalidCouponValue, "/value"),
        ({**FIXED, "value": "-1"}, discounts.InvalidCouponValue, "/value"),
        ({**FIXED, "currency": "ZZZ"}, money.UnknownCurrency, "/currency"),
        ({**FIXED, "currency": "usd"}, money.UnknownCurrency, "/currency"),
        ({**FIXED, "currency": "USD", "value": "10.005"}, money.InexactAmount, "/value"),
        ({**FIXED, "currency": "JPY", "value": "10.5"}, money.InexactAmount, "/value"),
        ({**BASE, "duration": "repeating"}, codes.MissingField, "/periods"),
        ({**BASE, "duration": "repeating", "periods": 0}, codes.InvalidValue, "/periods"),
        ({**BASE, "duration": "repeating", "periods": "3"}, codes.InvalidValue, "/periods"),
        ({**BASE, "duration": "repeating", "periods": True}, codes.InvalidValue, "/periods"),
        ({**BASE, "periods": 2}, codes.InvalidValue, "/periods"),
        ({**BASE, "duration": "forever", "periods": 2}, codes.InvalidValue, "/periods"),
        ({**BASE, "expires_at": "2026-01-01T00:00:00"}, discounts.InvalidExpiry, "/expires_at"),
        ({**BASE, "expires_at": "2026-01-01"}, discounts.InvalidExpiry, "/expires_at"),
        ({**BASE, "expires_at": "soon"}, discounts.InvalidExpiry, "/expires_at"),
        ({**BASE, "expires_at": "2026-02-30T00:00:00Z"}, discounts.InvalidExpiry, "/expires_at"),
        ({**BASE, "expires_at": "2026-01-01T00:00:00.1234567Z"}, discounts.InvalidExpiry, "/expires_at"),
        ({**BASE, "expires_at": dt.datetime(2026, 1, 1)}, discounts.InvalidExpiry, "/expires_at"),  # noqa: DTZ001
        ({**BASE, "expires_at": dt.date(2026, 1, 1)}, discounts.InvalidExpiry, "/expires_at"),
        ({**BASE, "max_redemptions": 0}, codes.InvalidValue, "/max_redemptions"),
        ({**BASE, "max_redemptions": "5"}, codes.InvalidValue, "/max_redemptions"),
        ({**BASE, "applies_to": ["pro"]}, codes.InvalidValue, "/applies_to"),
        ({**BASE, "applies_to": {"products": ["x"]}}, codes.UnknownField, "/applies_to/products"),
        ({**BASE, "applies_to": {"plans": "pro"}}, codes.InvalidValue, "/applies_to/plans"),
        ({**BASE, "applies_to": {"plans": ["pro", "pro"]}}, codes.InvalidValue, "/applies_to/plans/1"),
        ({**BASE, "applies_to": {"charges": ["ok", "not ok"]}}, codes.InvalidCode, "/applies_to/charges/1"),
    ],
)
def test_coupon_rules_name_the_offending_field(
    spec: dict[str, object], error: type[InvalidInput], field: str
) -> None:
    with pytest.raises(error) as raised:
        discounts.parse_coupon(spec, pointer=POINTER)
    assert raised.value.field == POINTER + field


def test_accepted_edges() -> None:
    assert coupon(**{**BASE, "value": "100"}).value == D(100)
    assert coupon(**{**BASE, "value": "0.01"}).value == D("0.01")
    assert coupon(**{**FIXED, "value": 5, "currency": "JPY"}).currency == JPY
    assert coupon(**{**BASE, "duration": "repeating", "periods": 1}).periods == 1
    assert coupon(**{**BASE, "name": None, "periods": None, "applies_to": None}) == coupon(**BASE)
    assert coupon(**{**BASE, "expires_at": "2026-01-01t00:00:00z"}).expires_at == dt.datetime(
        2026, 1, 1, tzinfo=dt.UTC
    )


def test_applies_to_plans_and_charges() -> None:
    limited = coupon(**{**BASE, "applies_to": {"plans": ["pro"], "charges": ["base"]}})
    assert limited.applies_to(plan="pro", charge="base")
    assert not limited.applies_to(plan="pro", charge="calls")
    assert not limited.applies_to(plan="team", charge="base")
    plans_only = coupon(**{**BASE, "applies_to": {"plans": ["pro"]}})
    assert plans_only.applies_to(plan="pro", charge="anything")
    assert WELCOME.applies_to(plan="any", charge="thing")


def test_redemption_window_and_limit() -> None:
    limited = coupon(**{**BASE, "expires_at": "2026-02-01T00:00:00Z", "max_redemptions": 2})
    before = dt.datetime(2026, 1, 31, 23, 59, tzinfo=dt.UTC)
    expiry = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    assert limited.can_redeem(at=before, redemptions=0)
    assert limited.can_redeem(at=before, redemptions=1)
    assert not limited.can_redeem(at=before, redemptions=2)
    assert not limited.can_redeem(at=expiry, redemptions=0)  # the expiry is the first instant it cannot
    paris = dt.timezone(dt.timedelta(hours=1))
    assert limited.can_redeem(at=dt.datetime(2026, 2, 1, 0, 30, tzinfo=paris), redemptions=0)
    assert WELCOME.can_redeem(at=expiry, redemptions=10**6)
    with pytest.raises(clock.NaiveDatetime):
        WELCOME.can_redeem(at=dt.datetime(2026, 1, 1), redemptions=0)  # noqa: DTZ001
    with pytest.raises(codes.InvalidValue):
        WELCOME.can_redeem(at=expiry, redemptions=-1)


def test_duration_decides_which_periods_are_discounted() -> None:
    assert WELCOME.discounts_period(periods_applied=0)
    assert not WELCOME.discounts_period(periods_applied=1)
    three = coupon(**{**BASE, "duration": "repeating", "periods": 3})
    assert [three.discounts_period(periods_applied=n) for n in range(5)] == [True, True, True, False, False]
    forever = coupon(**{**BASE, "duration": "forever"})
    assert forever.discounts_period(periods_applied=10**6)
    with pytest.raises(codes.InvalidValue) as raised:
        forever.discounts_period(periods_applied=-1)
    assert raised.value.field == "/periods_applied"


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(list(CouponKind)),
    units=st.integers(1, 10000),
    duration=st.sampled_from(list(CouponDuration)),
    periods_and_limit=st.tuples(st.integers(1, 36), st.one_of(st.none(), st.integers(1, 1000))),
    currency=st.one_of(st.none(), st.sampled_from(["USD", "JPY", "KWD"])),
)
def test_coupon_spec_round_trips(
    kind: CouponKind,
    units: int,
    duration: CouponDuration,
    periods_and_limit: tuple[int, int | None],
    currency: str | None,
) -> None:
    periods, limit = periods_and_limit
    spec: dict[str, object] = {
        "code": "C1",
        "kind": kind.value,
        "value": str(units) if kind is CouponKind.FIXED else str(D(units).scaleb(-2)),
        "duration": duration.value,
        "max_redemptions": limit,
    }
    if duration is CouponDuration.REPEATING:
        spec["periods"] = periods
    if kind is CouponKind.FIXED:
        spec["currency"] = currency
    parsed = discounts.parse_coupon(spec, pointer="")
    assert discounts.parse_coupon(parsed.to_spec(), pointer="") == parsed
