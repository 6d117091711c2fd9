"""The subscription state machine and the fee lines of its billing points."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal

import pytest

from accrual.domain import money, pricing
from accrual.domain import subscriptions as subs
from accrual.domain.periods import BillingInterval, IntervalUnit, Period, ProrationUnit
from accrual.domain.subscriptions import Action, BillingMode, ChangeTiming, Status

UTC = dt.UTC
USD, EUR = money.currency("USD"), money.currency("EUR")


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def terms(
    code: str,
    *fees: tuple[str, str, str],
    unit: IntervalUnit = IntervalUnit.MONTH,
    currency: money.Currency = USD,
    trial_days: int = 0,
    metered: bool = False,
) -> subs.VersionTerms:
    charges = [
        pricing.parse_charge(
            {"code": fee_code, "model": "flat", "amount": amount, "timing": timing}, pointer=""
        )
        for fee_code, amount, timing in fees
    ]
    if metered:
        charges.append(
            pricing.parse_charge(
                {"code": "calls", "model": "per_unit", "meter": "calls", "amount": "1"}, pointer=""
            )
        )
    return subs.VersionTerms.of(
        plan_version_id=uuid.uuid4(),
        plan_code=code,
        version=1,
        currency=currency,
        interval=BillingInterval(unit=unit, count=1),
        trial_days=trial_days,
        charges=charges,
    )


def start(
    version: subs.VersionTerms,
    when: dt.datetime,
    *,
    billing: BillingMode = BillingMode.ANNIVERSARY,
    tz: str = "UTC",
    quantity: int = 1,
    now: dt.datetime | None = None,
) -> subs.Step:
    return subs.create(
        terms=version,
        quantity=quantity,
        billing=billing,
        tz=tz,
        proration=ProrationUnit.DAY,
        start=when,
        now=now or when,
    )


def due(
    state: subs.State, *known: subs.VersionTerms, change: tuple[subs.VersionTerms, int] | None = None
) -> subs.Step:
    return subs.due_step(
        state,
        terms_by_version={t.plan_version_id: t for t in (state.terms, *known)},
        change_at_boundary=change,
        has_payment_method=True,
        trial_end_behavior=subs.TrialEndBehavior.ACTIVATE,
    )


def amounts(step: subs.Step) -> list[str]:
    assert step.billing is not None
    return [str(line.amount) for line in step.billing.fee_lines]


def test_calendar_billing_prorates_the_first_month() -> None:
    basic = terms("basic", ("base", "50.00", "in_advance"))
    step = start(basic, at(2026, 8, 10), billing=BillingMode.CALENDAR)
    assert step.billing is not None
    (line,) = step.billing.fee_lines
    assert (line.kind, str(line.amount)) == ("proration", "35.48")
    assert line.period == Period(at(2026, 8, 10), at(2026, 9, 1))
    renewed = due(step.state)
    assert renewed.billing is not None
    assert [(line.kind, str(line.amount)) for line in renewed.billing.fee_lines] == [("fee", "50.00")]
    assert renewed.billing.period == Period(at(2026, 9, 1), at(2026, 10, 1))


def test_immediate_upgrade_of_an_arrears_plan() -> None:
    basic = terms("basic", ("base", "100", "in_arrears"), currency=EUR)
    premium = terms("premium", ("base", "200", "in_arrears"), currency=EUR)
    created = start(basic, at(2026, 1, 1), billing=BillingMode.CALENDAR)
    assert created.billing is None  # arrears only: nothing to bill at the start
    changed = subs.change(
        created.state,
        at=at(2026, 1, 15),
        terms=premium,
        quantity=1,
        terms_by_version={basic.plan_version_id: basic, premium.plan_version_id: premium},
    )
    assert amounts(changed) == ["45.16"]
    assert changed.billing is not None
    assert changed.billing.period == Period(at(2026, 1, 15), at(2026, 2, 1))
    renewed = due(changed.state, basic)
    assert amounts(renewed) == ["109.68"]
    assert renewed.state.terms == premium


def test_immediate_upgrade_of_an_advance_plan_credits_and_charges() -> None:
    small = terms("small", ("base", "31", "in_advance"))
    big = terms("big", ("base", "62", "in_advance"))
    created = start(small, at(2026, 1, 1))
    changed = subs.change(
        created.state,
        at=at(2026, 1, 11),
        terms=big,
        quantity=1,
        terms_by_version={small.plan_version_id: small, big.plan_version_id: big},
    )
    # 21 unused days of 31: credit 21.00 of the small fee, charge 42.00 of the big one.
    assert amounts(changed) == ["-21.00", "42.00"]
    assert subs.is_upgrade(created.state, big, 1)
    assert not subs.is_upgrade(changed.state, small, 1)


def test_anniversary_periods_clamp_month_ends() -> None:
    fee = terms("m", ("base", "10", "in_advance"))
    step = start(fee, at(2028, 1, 31, 9))
    ends = []
    state = step.state
    for _ in range(4):
        assert state.period is not None
        ends.append(state.period.end)
        state = due(state).state
    assert ends == [at(2028, 2, 29, 9), at(2028, 3, 31, 9), at(2028, 4, 30, 9), at(2028, 5, 31, 9)]


def test_trial_bills_nothing_then_starts_paid_periods_at_its_end() -> None:
    trial = terms("t", ("base", "20", "in_advance"), trial_days=14, metered=True)
    created = start(trial, at(2026, 3, 1))
    assert created.state.status is Status.TRIALING
    assert created.billing is None
    ended = due(created.state)
    assert ended.state.status is Status.ACTIVE
    assert ended.billing is not None
    assert ended.billing.reason is subs.BillingReason.TRIAL_END
    assert [str(line.amount) for line in ended.billing.fee_lines] == ["20.00"]
    assert [u.window for u in ended.billing.usage] == [Period(at(2026, 3, 1), at(2026, 3, 15))]
    assert ended.state.period == Period(at(2026, 3, 15), at(2026, 4, 15))


def test_cancel_at_period_end_bills_arrears_only_then_nothing() -> None:
    plan = terms("p", ("base", "10", "in_advance"), ("support", "5", "in_arrears"), metered=True)
    created = start(plan, at(2026, 1, 1))
    canceled = subs.cancel(created.state, at=at(2026, 1, 20), timing=ChangeTiming.PERIOD_END)
    assert canceled.state.status is Status.CANCELED
    assert canceled.billing is None
    ended = due(canceled.state)
    assert ended.state.status is Status.ENDED
    assert amounts(ended) == ["5.00"]
    assert subs.next_due(ended.state) is None


def test_cancel_now_credits_the_unused_advance_fee() -> None:
    plan = terms("p", ("base", "31", "in_advance"), ("ops", "31", "in_arrears"))
    created = start(plan, at(2026, 1, 1))
    ended = subs.cancel(created.state, at=at(2026, 1, 11), timing=ChangeTiming.IMMEDIATE)
    assert ended.state.status is Status.ENDED
    assert amounts(ended) == ["10.00", "-21.00"]


def test_pause_and_resume_stop_and_restart_fees() -> None:
    plan = terms("p", ("base", "31", "in_advance"))
    created = start(plan, at(2026, 1, 1))
    paused = subs.pause(created.state, at=at(2026, 1, 11))
    assert amounts(paused) == ["-21.00"]
    renewed = due(paused.state)  # a boundary while paused charges nothing
    assert renewed.billing is None
    assert renewed.state.status is Status.PAUSED
    resumed = subs.resume(renewed.state, at=at(2026, 2, 15))
    assert amounts(resumed) == ["15.50"]  # Feb 15 – Mar 1: 14 of February's 28 days of 31.00
    assert resumed.state.status is Status.ACTIVE


def test_quantity_change_keeps_usage_in_one_window() -> None:
    plan = terms("seats", ("seat", "10", "in_advance"), metered=True)
    created = start(plan, at(2026, 1, 1), quantity=2)
    more = subs.change(
        created.state,
        at=at(2026, 1, 16),
        terms=plan,
        quantity=3,
        terms_by_version={plan.plan_version_id: plan},
    )
    assert more.billing is not None
    assert more.billing.usage == ()  # usage of the same version is rated once at period end
    renewed = due(more.state)
    assert renewed.billing is not None
    assert [u.window for u in renewed.billing.usage] == [Period(at(2026, 1, 1), at(2026, 2, 1))]


def test_pending_subscription_starts_later() -> None:
    plan = terms("p", ("base", "10", "in_advance"))
    created = start(plan, at(2026, 5, 1), now=at(2026, 4, 1))
    assert created.state.status is Status.PENDING
    assert subs.next_due(created.state) == at(2026, 5, 1)
    begun = due(created.state)
    assert begun.state.status is Status.ACTIVE
    assert amounts(begun) == ["10.00"]


ACTIONS_TAKING_AT = {
    Action.CHANGE,
    Action.PAUSE,
    Action.RESUME,
    Action.CANCEL,
    Action.CANCEL_NOW,
    Action.UNCANCEL,
    Action.MARK_PAST_DUE,
    Action.RECOVER,
}


@pytest.mark.parametrize(("status", "action"), list(itertools.product(Status, Action)))
def test_every_state_and_action(status: Status, action: Action) -> None:
    """Every (state, action) pair is either allowed or refused with a specific error."""
    if action is Action.CREATE:
        with pytest.raises(subs.IllegalTransition):
            subs.check(status, action)
        return
    if action in subs.ALLOWED[status]:
        subs.check(status, action)
    elif status is Status.ENDED:
        with pytest.raises(subs.SubscriptionAlreadyEnded):
            subs.check(status, action)
    else:
        with pytest.raises(subs.IllegalTransition):
            subs.check(status, action)


def test_decimal_quantities_are_refused() -> None:
    plan = terms("p", ("base", "10", "in_advance"))
    with pytest.raises(subs.InvalidSubscription):
        subs.create(
            terms=plan,
            quantity=Decimal("1.5"),  # type: ignore[arg-type]
            billing=BillingMode.ANNIVERSARY,
            tz="UTC",
            proration=ProrationUnit.DAY,
            start=at(2026, 1, 1),
            now=at(2026, 1, 1),
        )


@pytest.mark.parametrize(
    ("when", "billing", "tz", "offset"),
    [
        # Anniversary boundaries repeat the start's minute and second.
        (
            dt.datetime(2026, 3, 5, 8, 37, 12, 500_000, tzinfo=UTC),
            BillingMode.ANNIVERSARY,
            "UTC",
            dt.timedelta(minutes=37, seconds=12.5),
        ),
        # Calendar ones fall at local midnight: on the hour in Paris, half past in India, :45 in Nepal.
        (at(2026, 3, 5, 8, 37), BillingMode.CALENDAR, "Europe/Paris", dt.timedelta(0)),
        (at(2026, 3, 5, 8, 37), BillingMode.CALENDAR, "Asia/Kolkata", dt.timedelta(minutes=30)),
        (at(2026, 3, 5, 8, 37), BillingMode.CALENDAR, "Asia/Kathmandu", dt.timedelta(minutes=15)),
    ],
)
def test_usage_grid_offset_is_where_billing_boundaries_fall_in_the_hour(
    when: dt.datetime, billing: BillingMode, tz: str, offset: dt.timedelta
) -> None:
    step = start(terms("p", ("base", "10", "in_advance")), when, billing=billing, tz=tz)
    assert subs.usage_grid_offset(step.state) == offset
    period = step.state.period
    assert period is not None
    later = subs.usage_grid_offset(step.state)
    for boundary in (period.start, period.end):
        if boundary != when:  # a first, partial period starts at the start itself
            assert (boundary - later).astimezone(UTC).minute == 0
            assert (boundary - later).astimezone(UTC).second == 0
