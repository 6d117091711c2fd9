"""The subscription lifecycle: an explicit state machine over billing periods.

A subscription is in exactly one `Status` at any instant. Every change of state is one pure
step function here, which checks the move is allowed (`check`), and returns the new state,
the `Transition` to record in its history, and, where money is due, a `BillingPoint`: the
instant an invoice is composed, the invoice's period, the flat-fee lines computed now (fees,
prorations, credits) and the usage windows the billing engine rates.

Time is a billing period `[start, end)` computed from an anchor in the customer's time zone
(`periods`). The current period's service since it was last billed in arrears is kept as
`segments`: each says which plan version and quantity applied and whether flat fees accrued
(not during a trial or a pause). A billing point bills closed segments; usage of a plan
version that continues past a point stays open, so a seat change mid-period never splits a
tiered usage price.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

from accrual.domain import money, periods, pricing
from accrual.domain.clock import require_aware
from accrual.domain.errors import Conflict, InvalidInput
from accrual.domain.periods import BillingInterval, IntervalUnit, Period, ProrationUnit


class Status(enum.StrEnum):
    PENDING = "pending"  # starts in the future
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"  # an invoice is overdue; still billed
    PAUSED = "paused"  # no fees until resumed
    CANCELED = "canceled"  # ends at its period end; billed until then
    ENDED = "ended"


class Action(enum.StrEnum):
    CREATE = "create"  # recorded in history only: no state takes it
    START = "start"  # a pending subscription's start arrives
    END_TRIAL = "end_trial"
    RENEW = "renew"  # a period ends and the next begins
    CHANGE = "change"  # plan, plan version or quantity
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"  # at period end
    CANCEL_NOW = "cancel_now"
    UNCANCEL = "uncancel"
    END = "end"  # a canceled subscription's period ends
    MARK_PAST_DUE = "mark_past_due"
    RECOVER = "recover"  # its overdue invoices are settled


class BillingMode(enum.StrEnum):
    ANNIVERSARY = "anniversary"
    CALENDAR = "calendar"


class ChangeTiming(enum.StrEnum):
    IMMEDIATE = "immediate"
    PERIOD_END = "period_end"


class TrialEndBehavior(enum.StrEnum):
    """What a trial's end does when the customer has no payment method."""

    ACTIVATE = "activate"  # bill anyway (invoices are sent for payment)
    CANCEL = "cancel"
    PAUSE = "pause"


class BillingReason(enum.StrEnum):
    START = "start"
    BOUNDARY = "boundary"
    TRIAL_END = "trial_end"
    CHANGE = "change"
    CANCEL = "cancel"
    END = "end"
    PAUSE = "pause"
    RESUME = "resume"


ALLOWED: dict[Status, frozenset[Action]] = {
    Status.PENDING: frozenset({Action.START, Action.CHANGE, Action.CANCEL_NOW}),
    Status.TRIALING: frozenset({Action.END_TRIAL, Action.CHANGE, Action.CANCEL, Action.CANCEL_NOW}),
    Status.ACTIVE: frozenset(
        {Action.RENEW, Action.CHANGE, Action.PAUSE, Action.CANCEL, Action.CANCEL_NOW, Action.MARK_PAST_DUE}
    ),
    Status.PAST_DUE: frozenset(
        {Action.RENEW, Action.CHANGE, Action.CANCEL, Action.CANCEL_NOW, Action.RECOVER}
    ),
    Status.PAUSED: frozenset({Action.RENEW, Action.RESUME, Action.CANCEL, Action.CANCEL_NOW}),
    Status.CANCELED: frozenset({Action.END, Action.END_TRIAL, Action.UNCANCEL, Action.CANCEL_NOW}),
    Status.ENDED: frozenset(),
}

# A nominal length for comparing prices per day across intervals: the Gregorian mean year.
_DAYS_PER_YEAR = Fraction(3652425, 10000)
_NOMINAL_DAYS = {
    IntervalUnit.DAY: Fraction(1),
    IntervalUnit.WEEK: Fraction(7),
    IntervalUnit.MONTH: _DAYS_PER_YEAR / 12,
    IntervalUnit.QUARTER: _DAYS_PER_YEAR / 4,
    IntervalUnit.YEAR: _DAYS_PER_YEAR,
}


class IllegalTransition(Conflict):
    title = "Subscription cannot do that in its state"


class SubscriptionAlreadyEnded(IllegalTransition):
    title = "Subscription already ended"


class NothingToChange(InvalidInput):
    title = "Nothing to change"


class InvalidSubscription(InvalidInput):
    title = "Invalid subscription"


def check(status: Status, action: Action) -> None:
    """Raise unless a subscription in `status` may take `action`."""
    if action in ALLOWED[status]:
        return
    if status is Status.ENDED:
        raise SubscriptionAlreadyEnded(
            f"the subscription has ended; it cannot {action.value.replace('_', ' ')}"
        )
    raise IllegalTransition(f"a {status.value} subscription cannot {action.value.replace('_', ' ')}")


# --- terms ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FlatFee:
    code: str
    name: str
    amount: Decimal
    timing: pricing.ChargeTiming


@dataclasses.dataclass(frozen=True)
class VersionTerms:
    """What the lifecycle needs of a plan version: its interval, trial and flat fees."""

    plan_version_id: uuid.UUID
    plan_code: str
    version: int
    currency: money.Currency
    interval: BillingInterval
    trial_days: int
    fees: tuple[FlatFee, ...]
    has_usage: bool  # it has metered charges, so its periods end with usage lines

    @classmethod
    def of(
        cls,
        *,
        plan_version_id: uuid.UUID,
        plan_code: str,
        version: int,
        currency: money.Currency,
        interval: BillingInterval,
        trial_days: int,
        charges: Sequence[pricing.ChargeDefinition],
    ) -> VersionTerms:
        fees = tuple(
            FlatFee(code=c.code, name=c.name, amount=c.model.amount, timing=c.timing)
            for c in charges
            if isinstance(c.model, pricing.Flat)
        )
        has_usage = any(not isinstance(c.model, pricing.Flat) for c in charges)
        return cls(plan_version_id, plan_code, version, currency, interval, trial_days, fees, has_usage)

    def fees_timed(self, timing: pricing.ChargeTiming) -> tuple[FlatFee, ...]:
        return tuple(fee for fee in self.fees if fee.timing is timing)

    def price_per_day(self, quantity: int) -> Fraction:
        """Flat fees per nominal day, to tell an upgrade from a downgrade."""
        per_period = sum((Fraction(fee.amount) for fee in self.fees), Fraction(0)) * quantity
        return per_period / (_NOMINAL_DAYS[self.interval.unit] * self.interval.count)


# --- state ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Segment:
    """Service within the current period not yet billed in arrears: `[start, end)`, `end` None while open."""

    start: dt.datetime
    end: dt.datetime | None
    plan_version_id: uuid.UUID
    quantity: int
    fees: bool  # whether flat fees accrue (not in a trial, not while paused)

    def closed_at(self, end: dt.datetime) -> Segment:
        return dataclasses.replace(self, end=end)

    @property
    def window(self) -> Period:
        if self.end is None:
            raise ValueError("an open segment has no window")
        return Period(self.start, self.end)


@dataclasses.dataclass(frozen=True)
class State:
    """Everything the lifecycle knows about one subscription at one instant."""

    status: Status
    terms: VersionTerms
    quantity: int
    billing: BillingMode
    tz: str
    proration: ProrationUnit
    start: dt.datetime  # when service starts (or started)
    anchor: dt.datetime | None  # boundaries repeat from here; None until service starts
    trial_end: dt.datetime | None
    period: Period | None  # the current period (the trial while trialing); None when pending or ended
    segments: tuple[Segment, ...]
    advance_billed: bool  # the current period's in-advance fees were invoiced (so changes credit them)
    cancel_at_period_end: bool = False
    canceled_at: dt.datetime | None = None
    paused_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    prior_status: Status | None = None  # what a pause or a cancellation returns to


@dataclasses.dataclass(frozen=True)
class FeeLine:
    """A flat-fee line of an invoice, computed when its billing point happens."""

    kind: str  # fee (a whole period) | proration (part of one, a credit when negative)
    charge: str
    description: str
    period: Period
    quantity: Decimal
    unit_amount: Decimal
    amount: Decimal
    plan_version_id: uuid.UUID


@dataclasses.dataclass(frozen=True)
class UsageWindow:
    """Usage to rate at a billing point: a plan version's metered charges over `window`, part of `period`."""

    plan_version_id: uuid.UUID
    window: Period
    period: Period


@dataclasses.dataclass(frozen=True)
class BillingPoint:
    """An instant at which an invoice is composed for the subscription."""

    reason: BillingReason
    at: dt.datetime
    period: Period  # the invoice's period (SCENARIOS.md)
    fee_lines: tuple[FeeLine, ...]
    usage: tuple[UsageWindow, ...]


@dataclasses.dataclass(frozen=True)
class Transition:
    action: Action
    at: dt.datetime
    from_status: Status | None
    to_status: Status
    reason: str


@dataclasses.dataclass(frozen=True)
class Step:
    state: State
    transitions: tuple[Transition, ...]
    billing: BillingPoint | None


# --- periods -------------------------------------------------------------------------------


def _anchor_for(mode: BillingMode, interval: BillingInterval, start: dt.datetime, *, tz: str) -> dt.datetime:
    if mode is BillingMode.CALENDAR:
        return periods.calendar_start(start, interval.unit, tz=tz)
    return start


def usage_grid_offset(state: State) -> dt.timedelta:
    """Where in the (UTC) hour the subscription's billing boundaries fall.

    Its usage is rolled up in hours that start there, so a billing period's usage is whole
    buckets, with no partial hour at either end to read raw. Anniversary boundaries repeat the
    anchor's minute and second; calendar ones fall at local midnight.
    """
    anchor = state.anchor or _anchor_for(state.billing, state.terms.interval, state.start, tz=state.tz)
    utc = anchor.astimezone(dt.UTC)
    return utc - utc.replace(minute=0, second=0, microsecond=0)


def _period_from(anchor: dt.datetime, interval: BillingInterval, at: dt.datetime, *, tz: str) -> Period:
    """The billing period containing `at`, starting no earlier than `at` (a first period may be partial)."""
    full = periods.period_at(anchor, interval, at, tz=tz)
    return Period(max(full.start, at), full.end)


def _full_period(state: State, period: Period) -> Period:
    """The whole billing period of which `period` is a part (for prorating it)."""
    if state.anchor is None:
        return period
    return periods.period_at(state.anchor, state.terms.interval, period.start, tz=state.tz)


def _fraction(state: State, part: Period, whole: Period) -> Fraction:
    if part == whole:
        return Fraction(1)
    return periods.proration_fraction(part, whole, unit=state.proration, tz=state.tz)


# --- fee lines -----------------------------------------------------------------------------


def _fee_lines(
    state: State,
    terms: VersionTerms,
    *,
    timing: pricing.ChargeTiming,
    quantity: int,
    window: Period,
    whole: Period,
    credit: bool = False,
) -> list[FeeLine]:
    """The flat fees of `terms` with `timing` for `window`, a part of the billing period `whole`."""
    fraction = _fraction(state, window, whole)
    if fraction == 0:
        return []
    lines = []
    for fee in terms.fees_timed(timing):
        rating = pricing.rate(
            pricing.Flat(amount=fee.amount),
            quantity=quantity,
            currency=terms.currency,
            unit_label="seats",
            proration=fraction,
        )
        whole_period = fraction == 1 and not credit
        amount = -rating.amount if credit else rating.amount
        description = rating.description
        if credit:
            description = f"unused time: {description}"
        lines.append(
            FeeLine(
                kind="fee" if whole_period else "proration",
                charge=fee.code,
                description=f"{fee.name}: {description}",
                period=window,
                quantity=Decimal(quantity),
                unit_amount=fee.amount,
                amount=amount,
                plan_version_id=terms.plan_version_id,
            )
        )
    return lines


def _arrears(
    state: State,
    closed: Sequence[Segment],
    terms_by_version: Mapping[uuid.UUID, VersionTerms],
    *,
    continuing_version: uuid.UUID | None,
) -> tuple[list[FeeLine], list[UsageWindow], tuple[Segment, ...]]:
    """Bill closed segments in arrears: their flat fees now, their usage windows to rate.

    Usage of `continuing_version` (the version still in force after this point) stays open
    as segments, so it is rated once over the whole period later.
    """
    lines: list[FeeLine] = []
    for segment in closed:
        if segment.fees:
            terms = terms_by_version[segment.plan_version_id]
            lines += _fee_lines(
                state,
                terms,
                timing=pricing.ChargeTiming.IN_ARREARS,
                quantity=segment.quantity,
                window=segment.window,
                whole=_full_period(state, segment.window),
            )
    usage: list[UsageWindow] = []
    kept: list[Segment] = []
    for segment in closed:
        if not terms_by_version[segment.plan_version_id].has_usage:
            continue
        if segment.plan_version_id == continuing_version:
            # Flat fees are settled; usage waits for the rest of the period.
            kept.append(dataclasses.replace(segment, fees=False))
            continue
        window = segment.window
        if (
            usage
            and usage[-1].plan_version_id == segment.plan_version_id
            and usage[-1].window.end == window.start
        ):
            usage[-1] = UsageWindow(
                segment.plan_version_id, Period(usage[-1].window.start, window.end), usage[-1].period
            )
        else:
            usage.append(UsageWindow(segment.plan_version_id, window, _full_period(state, window)))
    return lines, usage, tuple(kept)


def _close(segments: Sequence[Segment], at: dt.datetime) -> list[Segment]:
    return [s if s.end is not None else s.closed_at(at) for s in segments if (s.end or at) > s.start]


def _open(state: State, at: dt.datetime, *, terms: VersionTerms, quantity: int, fees: bool) -> Segment:
    return Segment(start=at, end=None, plan_version_id=terms.plan_version_id, quantity=quantity, fees=fees)


def _point(
    reason: BillingReason,
    at: dt.datetime,
    period: Period,
    lines: Sequence[FeeLine],
    usage: Sequence[UsageWindow],
) -> BillingPoint | None:
    if not lines and not usage:
        return None
    return BillingPoint(reason=reason, at=at, period=period, fee_lines=tuple(lines), usage=tuple(usage))


# --- steps ---------------------------------------------------------------------------------


def create(
    *,
    terms: VersionTerms,
    quantity: int,
    billing: BillingMode,
    tz: str,
    proration: ProrationUnit,
    start: dt.datetime,
    now: dt.datetime,
    trial_days: int | None = None,
    anchor: dt.datetime | None = None,
) -> Step:
    """A new subscription: pending until `start` if that is after `now`, else started at `start`.

    `trial_days` overrides the plan version's; `anchor` (anniversary billing only) sets the
    instant boundaries repeat from, the first period running from `start` to the anchor's
    next boundary, prorated. A start in the past is backdated: the periods since then are
    billed as the due work catches up.
    """
    start, now = require_aware(start, name="start"), require_aware(now, name="now")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidSubscription("quantity is a whole number of at least 1", field="/quantity")
    days = terms.trial_days if trial_days is None else trial_days
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise InvalidSubscription("trial_days is a whole number of days, 0 or more", field="/trial_days")
    if anchor is not None:
        anchor = require_aware(anchor, name="anchor")
        if billing is BillingMode.CALENDAR:
            raise InvalidSubscription("a billing anchor applies to anniversary billing only", field="/anchor")
    pending = State(
        status=Status.PENDING,
        terms=terms,
        quantity=quantity,
        billing=billing,
        tz=tz,
        proration=proration,
        start=start,
        anchor=anchor,
        trial_end=start + dt.timedelta(days=days) if days else None,
        period=None,
        segments=(),
        advance_billed=False,
    )
    if start > now:
        created = Transition(Action.CREATE, start, None, Status.PENDING, "created; starts in the future")
        return Step(pending, (created,), None)
    begun = begin(pending, at=start)
    created = dataclasses.replace(begun.transitions[0], action=Action.CREATE, from_status=None)
    return Step(begun.state, (created,), begun.billing)


def begin(state: State, *, at: dt.datetime) -> Step:
    """Service starts: into a trial, or active with the first period's in-advance fees billed."""
    check(state.status, Action.START)
    terms, quantity = state.terms, state.quantity
    if state.trial_end is not None:
        trial = Period(at, state.trial_end)
        trialing = dataclasses.replace(
            state,
            status=Status.TRIALING,
            period=trial,
            segments=(_open(state, at, terms=terms, quantity=quantity, fees=False),),
            advance_billed=False,
        )
        return Step(
            trialing, (Transition(Action.START, at, state.status, Status.TRIALING, "trial started"),), None
        )
    anchor = state.anchor or _anchor_for(state.billing, terms.interval, at, tz=state.tz)
    period = _period_from(anchor, terms.interval, at, tz=state.tz)
    active = dataclasses.replace(
        state,
        status=Status.ACTIVE,
        anchor=anchor,
        period=period,
        segments=(_open(state, at, terms=terms, quantity=quantity, fees=True),),
        advance_billed=True,
    )
    lines = _fee_lines(
        active,
        terms,
        timing=pricing.ChargeTiming.IN_ADVANCE,
        quantity=quantity,
        window=period,
        whole=_full_period(active, period),
    )
    transition = Transition(Action.START, at, state.status, Status.ACTIVE, "started")
    return Step(active, (transition,), _point(BillingReason.START, at, period, lines, ()))


def end_trial(
    state: State,
    *,
    terms_by_version: Mapping[uuid.UUID, VersionTerms],
    has_payment_method: bool,
    behavior: TrialEndBehavior,
    change: tuple[VersionTerms, int] | None = None,
) -> Step:
    """The trial's end: bill its usage, then start the first paid period (on `change`'s terms, if
    one is scheduled for the trial's end), or end the subscription if it was canceled."""
    check(state.status, Action.END_TRIAL)
    if state.period is None or state.trial_end is None:
        raise IllegalTransition("the subscription is not in a trial")
    at = state.period.end
    usage_lines, usage, _ = _arrears(
        state, _close(state.segments, at), terms_by_version, continuing_version=None
    )
    ended_trial = Transition(Action.END_TRIAL, at, state.status, Status.ACTIVE, "trial ended")
    if state.status is Status.CANCELED:
        ended = dataclasses.replace(state, status=Status.ENDED, period=None, segments=(), ended_at=at)
        transition = Transition(
            Action.END, at, state.status, Status.ENDED, "canceled during its trial; ended"
        )
        return Step(ended, (transition,), _point(BillingReason.END, at, state.period, usage_lines, usage))
    if not has_payment_method and behavior is TrialEndBehavior.CANCEL:
        ended = dataclasses.replace(state, status=Status.ENDED, period=None, segments=(), ended_at=at)
        transition = Transition(
            Action.END, at, state.status, Status.ENDED, "trial ended without a payment method; ended"
        )
        return Step(ended, (transition,), _point(BillingReason.END, at, state.period, usage_lines, usage))
    terms, quantity = change if change is not None else (state.terms, state.quantity)
    anchor = state.anchor or _anchor_for(state.billing, terms.interval, at, tz=state.tz)
    period = _period_from(anchor, terms.interval, at, tz=state.tz)
    paying = not (not has_payment_method and behavior is TrialEndBehavior.PAUSE)
    after = dataclasses.replace(
        state,
        terms=terms,
        quantity=quantity,
        status=Status.ACTIVE if paying else Status.PAUSED,
        anchor=anchor,
        period=period,
        segments=(_open(state, at, terms=terms, quantity=quantity, fees=paying),),
        advance_billed=paying,
        paused_at=None if paying else at,
        prior_status=None if paying else Status.ACTIVE,
    )
    lines = list(usage_lines)
    if paying:
        lines += _fee_lines(
            after,
            terms,
            timing=pricing.ChargeTiming.IN_ADVANCE,
            quantity=quantity,
            window=period,
            whole=_full_period(after, period),
        )
        transitions: tuple[Transition, ...] = (ended_trial,)
    else:
        transitions = (
            ended_trial,
            Transition(
                Action.PAUSE, at, Status.ACTIVE, Status.PAUSED, "trial ended without a payment method; paused"
            ),
        )
    return Step(after, transitions, _point(BillingReason.TRIAL_END, at, period, lines, usage))


def renew(
    state: State,
    *,
    terms_by_version: Mapping[uuid.UUID, VersionTerms],
    change: tuple[VersionTerms, int] | None = None,
) -> Step:
    """The current period ends: bill it in arrears; start the next (on `change`'s terms, if one is
    scheduled for this boundary) with its in-advance fees, unless the subscription is canceled,
    in which case it ends here."""
    if state.status is Status.CANCELED:
        return _end_at_period_end(state, terms_by_version=terms_by_version)
    check(state.status, Action.RENEW)
    if state.period is None or state.anchor is None:
        raise IllegalTransition("the subscription has no current period")
    at = state.period.end
    terms, quantity = change if change is not None else (state.terms, state.quantity)
    anchor = state.anchor
    if terms.interval != state.terms.interval:
        anchor = _anchor_for(state.billing, terms.interval, at, tz=state.tz)
    arrears_lines, usage, _ = _arrears(
        state, _close(state.segments, at), terms_by_version, continuing_version=None
    )
    paused = state.status is Status.PAUSED
    next_period = _period_from(anchor, terms.interval, at, tz=state.tz)
    after = dataclasses.replace(
        state,
        terms=terms,
        quantity=quantity,
        anchor=anchor,
        period=next_period,
        segments=(_open(state, at, terms=terms, quantity=quantity, fees=not paused),),
        advance_billed=not paused,
    )
    lines = list(arrears_lines)
    if not paused:
        lines += _fee_lines(
            after,
            terms,
            timing=pricing.ChargeTiming.IN_ADVANCE,
            quantity=quantity,
            window=next_period,
            whole=_full_period(after, next_period),
        )
    transitions = [
        Transition(Action.RENEW, at, state.status, state.status, f"renewed for {_span(next_period)}")
    ]
    if change is not None:
        transitions.append(
            Transition(Action.CHANGE, at, state.status, state.status, _change_reason(state, terms, quantity))
        )
    # An invoice's period is the period it charges in advance, or the one that ended.
    invoice_period = next_period if any(line.period == next_period for line in lines) else state.period
    return Step(after, tuple(transitions), _point(BillingReason.BOUNDARY, at, invoice_period, lines, usage))


def _end_at_period_end(state: State, *, terms_by_version: Mapping[uuid.UUID, VersionTerms]) -> Step:
    check(state.status, Action.END)
    if state.period is None:
        raise IllegalTransition("the subscription has no current period")
    at = state.period.end
    lines, usage, _ = _arrears(state, _close(state.segments, at), terms_by_version, continuing_version=None)
    ended = dataclasses.replace(state, status=Status.ENDED, period=None, segments=(), ended_at=at)
    transition = Transition(
        Action.END, at, state.status, Status.ENDED, "ended at its period end, as canceled"
    )
    return Step(ended, (transition,), _point(BillingReason.END, at, state.period, lines, usage))


def is_upgrade(state: State, terms: VersionTerms, quantity: int) -> bool:
    """An upgrade costs more per day than what it replaces (a quantity increase included)."""
    return terms.price_per_day(quantity) > state.terms.price_per_day(state.quantity)


def _change_reason(state: State, terms: VersionTerms, quantity: int) -> str:
    parts = []
    if terms.plan_version_id != state.terms.plan_version_id:
        parts.append(
            f"plan {state.terms.plan_code} v{state.terms.version} → {terms.plan_code} v{terms.version}"
        )
    if quantity != state.quantity:
        parts.append(f"quantity {state.quantity} → {quantity}")
    return "changed: " + ", ".join(parts)


def change(
    state: State,
    *,
    at: dt.datetime,
    terms: VersionTerms,
    quantity: int,
    terms_by_version: Mapping[uuid.UUID, VersionTerms],
) -> Step:
    """Change plan, plan version or quantity at once, at `at`.

    Prorated: the old terms' in-arrears fees are billed for the time used, their in-advance
    fees credited for the time left, and the new terms' in-advance fees charged for it, all
    on one invoice whose period runs from the change to the period's end; usage of a version
    replaced is billed up to the change. A change onto another interval restarts the billing
    period at the change. Within a trial the trial goes on, on the new terms.
    """
    check(state.status, Action.CHANGE)
    at = require_aware(at, name="at")
    if terms.plan_version_id == state.terms.plan_version_id and quantity == state.quantity:
        raise NothingToChange("the subscription already has this plan version and quantity")
    if terms.currency != state.terms.currency:
        raise InvalidSubscription(
            f"the new plan is priced in {terms.currency.code}, "
            f"the subscription in {state.terms.currency.code}",
            field="/plan",
        )
    reason = _change_reason(state, terms, quantity)
    transition = Transition(Action.CHANGE, at, state.status, state.status, reason)
    if state.status is Status.PENDING:
        return Step(dataclasses.replace(state, terms=terms, quantity=quantity), (transition,), None)
    if state.period is None:
        raise IllegalTransition("the subscription has no current period")
    if not state.period.start <= at < state.period.end:
        raise InvalidSubscription("an immediate change happens within the current period", field="/at")
    in_trial = state.status is Status.TRIALING or (state.trial_end is not None and at < state.trial_end)
    closed = _close(state.segments, at)
    continuing = terms.plan_version_id
    arrears_lines, usage, kept = _arrears(state, closed, terms_by_version, continuing_version=continuing)
    lines = list(arrears_lines)
    period = state.period
    anchor = state.anchor
    fees = not in_trial and state.status is not Status.PAUSED
    if fees and state.advance_billed:
        lines += _fee_lines(
            state,
            state.terms,
            timing=pricing.ChargeTiming.IN_ADVANCE,
            quantity=state.quantity,
            window=Period(at, period.end),
            whole=_full_period(state, period),
            credit=True,
        )
    new_period = period
    if not in_trial and terms.interval != state.terms.interval:
        anchor = _anchor_for(state.billing, terms.interval, at, tz=state.tz)
        new_period = _period_from(anchor, terms.interval, at, tz=state.tz)
    after = dataclasses.replace(
        state,
        terms=terms,
        quantity=quantity,
        anchor=anchor,
        period=new_period if not in_trial else period,
        segments=(*kept, _open(state, at, terms=terms, quantity=quantity, fees=fees)),
        advance_billed=fees,
    )
    if fees:
        remaining = Period(at, new_period.end)
        lines += _fee_lines(
            after,
            terms,
            timing=pricing.ChargeTiming.IN_ADVANCE,
            quantity=quantity,
            window=remaining,
            whole=_full_period(after, remaining),
        )
    invoice_period = Period(at, (new_period if not in_trial else period).end)
    return Step(after, (transition,), _point(BillingReason.CHANGE, at, invoice_period, lines, usage))


def cancel(state: State, *, at: dt.datetime, timing: ChangeTiming) -> Step:
    """Cancel at period end (the subscription stays billable until then) or at once.

    At once: one final invoice bills the time used in arrears (usage up to now, in-arrears
    fees prorated) and credits the unused part of in-advance fees.
    """
    at = require_aware(at, name="at")
    if timing is ChangeTiming.PERIOD_END:
        check(state.status, Action.CANCEL)
        if state.period is None:
            raise IllegalTransition("the subscription has no current period")
        canceled = dataclasses.replace(
            state,
            status=Status.CANCELED,
            cancel_at_period_end=True,
            canceled_at=at,
            prior_status=state.status,
        )
        when = state.period.end
        reason = f"canceled; ends {when.isoformat()}"
        return Step(canceled, (Transition(Action.CANCEL, at, state.status, Status.CANCELED, reason),), None)
    check(state.status, Action.CANCEL_NOW)
    ended = dataclasses.replace(
        state, status=Status.ENDED, period=None, segments=(), canceled_at=at, ended_at=at
    )
    transition = Transition(Action.CANCEL_NOW, at, state.status, Status.ENDED, "canceled immediately; ended")
    if state.status is Status.PENDING or state.period is None:
        return Step(ended, (transition,), None)
    lines, usage, _ = _arrears(state, _close(state.segments, at), _self_terms(state), continuing_version=None)
    lines = list(lines)
    fees = state.status not in (Status.TRIALING, Status.PAUSED) and state.advance_billed
    if fees and at < state.period.end:
        lines += _fee_lines(
            state,
            state.terms,
            timing=pricing.ChargeTiming.IN_ADVANCE,
            quantity=state.quantity,
            window=Period(at, state.period.end),
            whole=_full_period(state, state.period),
            credit=True,
        )
    period = Period(state.period.start, at) if at > state.period.start else state.period
    return Step(ended, (transition,), _point(BillingReason.CANCEL, at, period, lines, usage))


def _self_terms(state: State) -> dict[uuid.UUID, VersionTerms]:
    return {state.terms.plan_version_id: state.terms}


def uncancel(state: State, *, at: dt.datetime) -> Step:
    """Take back a cancellation at period end before it takes effect."""
    check(state.status, Action.UNCANCEL)
    back = state.prior_status or Status.ACTIVE
    restored = dataclasses.replace(
        state, status=back, cancel_at_period_end=False, canceled_at=None, prior_status=None
    )
    return Step(
        restored, (Transition(Action.UNCANCEL, at, state.status, back, "cancellation taken back"),), None
    )


def pause(state: State, *, at: dt.datetime) -> Step:
    """Pause at once: fees stop. The time used is billed, the unused in-advance fees credited."""
    check(state.status, Action.PAUSE)
    at = require_aware(at, name="at")
    if state.period is None or not state.period.start <= at < state.period.end:
        raise InvalidSubscription("a pause happens within the current period", field="/at")
    closed = _close(state.segments, at)
    lines, usage, kept = _arrears(
        state, closed, _self_terms(state), continuing_version=state.terms.plan_version_id
    )
    lines = list(lines)
    if state.advance_billed:
        lines += _fee_lines(
            state,
            state.terms,
            timing=pricing.ChargeTiming.IN_ADVANCE,
            quantity=state.quantity,
            window=Period(at, state.period.end),
            whole=_full_period(state, state.period),
            credit=True,
        )
    paused = dataclasses.replace(
        state,
        status=Status.PAUSED,
        paused_at=at,
        prior_status=state.status,
        segments=(*kept, _open(state, at, terms=state.terms, quantity=state.quantity, fees=False)),
        advance_billed=False,
    )
    transition = Transition(Action.PAUSE, at, state.status, Status.PAUSED, "paused; no fees until resumed")
    return Step(
        paused, (transition,), _point(BillingReason.PAUSE, at, Period(at, state.period.end), lines, usage)
    )


def resume(state: State, *, at: dt.datetime) -> Step:
    """Resume: fees start again, the in-advance ones prorated for the rest of the period."""
    check(state.status, Action.RESUME)
    at = require_aware(at, name="at")
    if state.period is None or not state.period.start <= at < state.period.end:
        raise InvalidSubscription("a resume happens within the current period", field="/at")
    closed = _close(state.segments, at)
    _, _, kept = _arrears(state, closed, _self_terms(state), continuing_version=state.terms.plan_version_id)
    resumed = dataclasses.replace(
        state,
        status=state.prior_status or Status.ACTIVE,
        paused_at=None,
        prior_status=None,
        segments=(*kept, _open(state, at, terms=state.terms, quantity=state.quantity, fees=True)),
        advance_billed=True,
    )
    remaining = Period(at, state.period.end)
    lines = _fee_lines(
        resumed,
        state.terms,
        timing=pricing.ChargeTiming.IN_ADVANCE,
        quantity=state.quantity,
        window=remaining,
        whole=_full_period(resumed, state.period),
    )
    transition = Transition(Action.RESUME, at, state.status, resumed.status, "resumed; fees start again")
    return Step(resumed, (transition,), _point(BillingReason.RESUME, at, remaining, lines, ()))


def mark_past_due(state: State, *, at: dt.datetime) -> Step:
    check(state.status, Action.MARK_PAST_DUE)
    after = dataclasses.replace(state, status=Status.PAST_DUE)
    return Step(
        after, (Transition(Action.MARK_PAST_DUE, at, state.status, Status.PAST_DUE, "invoice overdue"),), None
    )


def recover(state: State, *, at: dt.datetime) -> Step:
    check(state.status, Action.RECOVER)
    after = dataclasses.replace(state, status=Status.ACTIVE)
    return Step(
        after, (Transition(Action.RECOVER, at, state.status, Status.ACTIVE, "overdue invoices paid"),), None
    )


# --- what is due when ----------------------------------------------------------------------


def due_step(
    state: State,
    *,
    terms_by_version: Mapping[uuid.UUID, VersionTerms],
    change_at_boundary: tuple[VersionTerms, int] | None,
    has_payment_method: bool,
    trial_end_behavior: TrialEndBehavior,
) -> Step:
    """The automatic transition due at `next_due(state)`: a pending start, a trial's end, or a
    period's end (renewal, with a change scheduled for that boundary, or the end of a canceled
    subscription)."""
    if state.status is Status.PENDING:
        return begin(state, at=state.start)
    in_trial = state.status is Status.TRIALING or (
        state.status is Status.CANCELED and state.prior_status is Status.TRIALING
    )
    if in_trial:
        return end_trial(
            state,
            terms_by_version=terms_by_version,
            has_payment_method=has_payment_method,
            behavior=trial_end_behavior,
            change=change_at_boundary,
        )
    return renew(state, terms_by_version=terms_by_version, change=change_at_boundary)


def next_due(state: State) -> dt.datetime | None:
    """The instant of the subscription's next automatic transition (start, trial end, period end)."""
    if state.status is Status.PENDING:
        return state.start
    if state.status is Status.ENDED or state.period is None:
        return None
    return state.period.end


def _span(period: Period) -> str:
    return f"[{period.start.isoformat()}, {period.end.isoformat()})"
