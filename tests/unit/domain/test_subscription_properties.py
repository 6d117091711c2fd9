"""Properties of the lifecycle over random histories on random clocks and time zones."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from accrual.domain import money, pricing
from accrual.domain import subscriptions as subs
from accrual.domain.periods import BillingInterval, IntervalUnit, Period, ProrationUnit
from accrual.domain.subscriptions import BillingMode, ChangeTiming, Status

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
USD = money.currency("USD")


@st.composite
def version_terms(draw: st.DrawFn) -> subs.VersionTerms:
    fees = []
    for i in range(draw(st.integers(0, 2))):
        amount = draw(st.sampled_from(["10", "31.00", "99.99", "1000"]))
        timing = draw(st.sampled_from(["in_advance", "in_arrears"]))
        fees.append(
            pricing.parse_charge(
                {"code": f"fee{i}", "model": "flat", "amount": amount, "timing": timing}, pointer=""
            )
        )
    if draw(st.booleans()):
        fees.append(
            pricing.parse_charge(
                {"code": "use", "model": "per_unit", "meter": "m", "amount": "1"}, pointer=""
            )
        )
    return subs.VersionTerms.of(
        plan_version_id=uuid.uuid4(),
        plan_code="p",
        version=1,
        currency=USD,
        interval=BillingInterval(
            unit=draw(st.sampled_from(list(IntervalUnit))), count=draw(st.integers(1, 3))
        ),
        trial_days=draw(st.sampled_from([0, 0, 7, 30])),
        charges=fees,
    )


STARTS = st.sampled_from(
    [
        dt.datetime(2026, 1, 31, 10, tzinfo=dt.UTC),
        dt.datetime(2028, 2, 29, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC),  # Paris springs forward
        dt.datetime(2026, 11, 1, 6, 30, tzinfo=dt.UTC),  # New York falls back
        dt.datetime(2026, 4, 4, 15, 0, tzinfo=dt.UTC),  # Sydney falls back
        dt.datetime(2026, 8, 30, 22, 45, tzinfo=dt.UTC),
    ]
)

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["due", "due", "due", "change", "pause", "resume", "cancel", "uncancel", "cancel_now"]
        ),
        st.integers(1, 10_000),  # where within the current period an operation happens, in 1/10,000ths
        st.integers(1, 5),  # a new quantity
    ),
    max_size=25,
)


def _within(period: Period, share: int) -> dt.datetime:
    return period.start + (period.end - period.start) * share / 10_001


@dataclasses.dataclass
class Run:
    state: subs.State
    now: dt.datetime
    known: dict[uuid.UUID, subs.VersionTerms]
    log: list[tuple[str, dict[str, Any]]]
    points: list[subs.BillingPoint]


def _apply(run: Run, name: str, **kwargs: Any) -> None:
    functions = {
        "due": subs.due_step,
        "change": subs.change,
        "pause": subs.pause,
        "resume": subs.resume,
        "cancel": subs.cancel,
        "uncancel": subs.uncancel,
    }
    step = functions[name](run.state, **kwargs)
    before = run.state
    run.state = step.state
    run.log.append((name, kwargs))
    if step.billing is not None:
        run.points.append(step.billing)
    if (
        name == "due"
        and before.period is not None
        and step.state.period is not None
        and before.status is not Status.PENDING
    ):
        # Periods tile: the next starts exactly where the last ended.
        assert step.state.period.start == before.period.end
    for transition in step.transitions:
        assert transition.to_status in Status


def _check(state: subs.State) -> None:
    if state.period is None:
        assert state.status in (Status.PENDING, Status.ENDED)
        return
    assert state.period.start < state.period.end
    assert state.segments, "service in a period is always accounted for"
    for earlier, later in zip(state.segments, state.segments[1:], strict=False):
        assert earlier.end == later.start, "segments tile"
    assert state.segments[-1].end is None
    assert state.segments[0].start >= state.period.start or state.status is Status.TRIALING


@settings(max_examples=300, deadline=None)
@given(
    terms=version_terms(),
    other=version_terms(),
    start=STARTS,
    tz=st.sampled_from(ZONES),
    billing=st.sampled_from(list(BillingMode)),
    ops=OPS,
)
def test_random_histories_keep_the_invariants(  # noqa: PLR0912 - one branch per operation
    terms: subs.VersionTerms,
    other: subs.VersionTerms,
    start: dt.datetime,
    tz: str,
    billing: BillingMode,
    ops: list[tuple[str, int, int]],
) -> None:
    created = subs.create(
        terms=terms, quantity=1, billing=billing, tz=tz, proration=ProrationUnit.DAY, start=start, now=start
    )
    known = {terms.plan_version_id: terms, other.plan_version_id: other}
    run = Run(created.state, start, known, [], [created.billing] if created.billing else [])
    _check(run.state)
    for name, share, quantity in ops:
        state = run.state
        allowed = subs.ALLOWED[state.status]
        if name == "due" and state.status is not Status.ENDED:
            _apply(
                run,
                "due",
                terms_by_version=known,
                change_at_boundary=None,
                has_payment_method=True,
                trial_end_behavior=subs.TrialEndBehavior.ACTIVATE,
            )
        elif state.period is not None:
            at = _within(state.period, share)
            if at <= run.now:
                # Keep time moving forward: try again a little later in the same period.
                at = run.now + (state.period.end - run.now) / 2
                if not run.now < at < state.period.end:
                    continue
            if name == "change" and subs.Action.CHANGE in allowed:
                target = other if quantity % 2 else state.terms
                if target.plan_version_id == state.terms.plan_version_id and quantity == state.quantity:
                    continue
                _apply(run, "change", at=at, terms=target, quantity=quantity, terms_by_version=known)
            elif name == "pause" and subs.Action.PAUSE in allowed:
                _apply(run, "pause", at=at)
            elif name == "resume" and subs.Action.RESUME in allowed:
                _apply(run, "resume", at=at)
            elif name == "cancel" and subs.Action.CANCEL in allowed:
                _apply(run, "cancel", at=at, timing=ChangeTiming.PERIOD_END)
            elif name == "cancel_now" and subs.Action.CANCEL_NOW in allowed:
                _apply(run, "cancel", at=at, timing=ChangeTiming.IMMEDIATE)
            elif name == "uncancel" and subs.Action.UNCANCEL in allowed:
                _apply(run, "uncancel", at=at)
            else:
                continue
            run.now = at
        _check(run.state)
    # Billing points never go back in time, and every fee line lies within its point's reach.
    instants = [p.at for p in run.points]
    assert instants == sorted(instants)
    for point in run.points:
        for line in point.fee_lines:
            assert line.amount * 100 == int(line.amount * 100), "no fraction of a cent"
    # Replaying the recorded steps from the same start reproduces the state exactly.
    replay = subs.create(
        terms=terms, quantity=1, billing=billing, tz=tz, proration=ProrationUnit.DAY, start=start, now=start
    )
    state = replay.state
    functions = {
        "due": subs.due_step,
        "change": subs.change,
        "pause": subs.pause,
        "resume": subs.resume,
        "cancel": subs.cancel,
        "uncancel": subs.uncancel,
    }
    for name, kwargs in run.log:
        state = functions[name](state, **kwargs).state
    assert state == run.state


@settings(max_examples=60, deadline=None)
@given(start=STARTS, tz=st.sampled_from(ZONES), count=st.integers(1, 3))
def test_uninterrupted_advance_fees_sum_to_whole_periods(start: dt.datetime, tz: str, count: int) -> None:
    """Renewing bills exactly one whole fee per period, whatever the zone or month length."""
    terms = subs.VersionTerms.of(
        plan_version_id=uuid.uuid4(),
        plan_code="p",
        version=1,
        currency=USD,
        interval=BillingInterval(unit=IntervalUnit.MONTH, count=count),
        trial_days=0,
        charges=[pricing.parse_charge({"code": "f", "model": "flat", "amount": "30"}, pointer="")],
    )
    step = subs.create(
        terms=terms,
        quantity=1,
        billing=BillingMode.ANNIVERSARY,
        tz=tz,
        proration=ProrationUnit.DAY,
        start=start,
        now=start,
    )
    state = step.state
    for _ in range(14):
        step = subs.due_step(
            state,
            terms_by_version={terms.plan_version_id: terms},
            change_at_boundary=None,
            has_payment_method=True,
            trial_end_behavior=subs.TrialEndBehavior.ACTIVATE,
        )
        assert step.billing is not None
        assert [(line.kind, str(line.amount)) for line in step.billing.fee_lines] == [("fee", "30.00")]
        state = step.state
