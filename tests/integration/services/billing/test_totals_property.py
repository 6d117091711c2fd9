"""For random catalogs and usage, invoices add up, and their totals equal an independent oracle's."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accrual.store.database import Database
from tests.integration.services.billing.conftest import play

MONTHS = [dt.datetime(2026, m, 1, tzinfo=dt.UTC) for m in (1, 2, 3, 4)]
CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    return (
        value.quantize(CENT, rounding=ROUND_HALF_UP)
        if value >= 0
        else -(-value).quantize(CENT, rounding=ROUND_HALF_UP)
    )


def price(model: dict[str, Any], quantity: int) -> Decimal:
    """The charge for `quantity` units, straight from SCENARIOS.md's definitions."""
    if model["model"] == "per_unit":
        return Decimal(model["amount"]) * quantity
    tiers = model["tiers"]
    if model["model"] == "volume":
        for tier in tiers:
            if tier["up_to"] is None or quantity <= tier["up_to"]:
                return Decimal(tier["unit_amount"]) * quantity + Decimal(tier["flat_amount"])
    total, lower = Decimal(0), 0
    for tier in tiers:
        if quantity > lower:
            top = quantity if tier["up_to"] is None else min(quantity, tier["up_to"])
            total += Decimal(tier["unit_amount"]) * (top - lower) + Decimal(tier["flat_amount"])
        lower = tier["up_to"] or lower
    return total


def invoice_total(amounts: list[Decimal], *, percent_off: Decimal, rate: Decimal) -> Decimal:
    """One invoice: the discount shared in proportion (largest remainder), then tax per line."""
    eligible = [a for a in amounts if a > 0]
    discount_cents = int(cents(sum(eligible, Decimal(0)) * percent_off / 100) / CENT)
    base = sum(eligible, Decimal(0))
    shares = []
    for amount in amounts:
        exact = Decimal(discount_cents) * amount / base if amount > 0 and base else Decimal(0)
        shares.append([int(exact), exact - int(exact)])
    left = discount_cents - sum(s[0] for s in shares)
    for index in sorted(range(len(shares)), key=lambda i: (-shares[i][1], i))[:left]:
        shares[index][0] += 1
    total = Decimal(0)
    for amount, (share, _) in zip(amounts, shares, strict=True):
        net = amount - Decimal(share) * CENT
        total += net + cents(net * rate / 100)
    return total


tier_sets = st.sampled_from(
    [
        [
            {"up_to": 5, "unit_amount": "1.10", "flat_amount": "2"},
            {"up_to": None, "unit_amount": "0.35", "flat_amount": "1"},
        ],
        [
            {"up_to": 3, "unit_amount": "0", "flat_amount": "0"},
            {"up_to": 10, "unit_amount": "0.333", "flat_amount": "0.5"},
            {"up_to": None, "unit_amount": "0.125", "flat_amount": "0"},
        ],
    ]
)
metered = st.one_of(
    st.builds(lambda a: {"model": "per_unit", "amount": a}, st.sampled_from(["0.05", "1.25", "0.0333"])),
    st.builds(lambda t: {"model": "graduated", "tiers": t}, tier_sets),
    st.builds(lambda t: {"model": "volume", "tiers": t}, tier_sets),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    advance=st.sampled_from(["0", "9.99", "31"]),
    arrears=st.sampled_from(["0", "20", "12.34"]),
    usage=metered,
    percent_off=st.sampled_from([None, "10", "33.3"]),
    rate=st.sampled_from([None, "7.7", "20"]),
    days=st.lists(st.integers(min_value=0, max_value=89), max_size=25),
)
def test_invoices_add_up_and_match_the_oracle(
    db: Database,
    advance: str,
    arrears: str,
    usage: dict[str, Any],
    percent_off: str | None,
    rate: str | None,
    days: list[int],
) -> None:
    charges: list[dict[str, Any]] = [{"code": "calls", "meter": "calls", **usage}]
    if advance != "0":
        charges.append({"code": "plan", "model": "flat", "amount": advance, "timing": "in_advance"})
    if arrears != "0":
        charges.append({"code": "ops", "model": "flat", "amount": arrears, "timing": "in_arrears"})
    catalog: dict[str, Any] = {
        "meters": [{"code": "calls", "aggregation": "count"}],
        "plans": [{"code": "p", "currency": "USD", "interval": "month", "charges": charges}],
    }
    customer: dict[str, Any] = {"id": "acme", "currency": "USD"}
    subscribe: dict[str, Any] = {"id": "s", "customer": "acme", "plan": "p", "billing": "calendar"}
    if percent_off:
        catalog["coupons"] = [
            {"code": "OFF", "kind": "percentage", "value": percent_off, "duration": "forever"}
        ]
        subscribe["coupon"] = "OFF"
    if rate:
        catalog["taxes"] = [{"code": "TAX", "rate": rate}]
        customer["tax"] = "TAX"
    stamps = [MONTHS[0] + dt.timedelta(days=d, hours=6) for d in days]
    played = play(
        db,
        {
            "name": "oracle",
            "start": "2026-01-01T00:00:00Z",
            "catalog": catalog,
            "customers": [customer],
            "steps": [
                {"at": "2026-01-01T00:00:00Z", "subscribe": subscribe},
                {
                    "at": "2026-01-01T00:00:00Z",
                    "events": [
                        {"id": f"e{i}", "subscription": "s", "meter": "calls", "timestamp": t.isoformat()}
                        for i, t in enumerate(stamps)
                    ],
                },
            ],
            "end": MONTHS[-1].isoformat(),
        },
    )
    expected: list[Decimal] = []
    for i, boundary in enumerate(MONTHS):
        amounts: list[Decimal] = []
        if i > 0:
            if arrears != "0":
                amounts.append(Decimal(arrears))
            quantity = sum(1 for t in stamps if MONTHS[i - 1] <= t < boundary)
            amounts.append(cents(price(usage, quantity)))
        if advance != "0":
            amounts.append(Decimal(advance))
        if amounts:
            expected.append(
                invoice_total(amounts, percent_off=Decimal(percent_off or 0), rate=Decimal(rate or 0))
            )
    got = played.invoices
    assert [Decimal(i["total"]) for i in got] == expected
    for invoice in got:
        lines = invoice["lines"]
        assert Decimal(invoice["subtotal"]) == sum(Decimal(x["amount"]) for x in lines)
        assert Decimal(invoice["discount"]) == sum(Decimal(x["discount"]) for x in lines)
        assert Decimal(invoice["tax"]) == sum(Decimal(x["tax"]) for x in lines)
        assert Decimal(invoice["total"]) == Decimal(invoice["subtotal"]) - Decimal(
            invoice["discount"]
        ) + Decimal(invoice["tax"])
