"""Billing periods: half-open spans of time and the calendar arithmetic that makes them.

A `Period` is `[start, end)` between two UTC instants. Billing boundaries are computed on
the customer's wall clock, in their IANA time zone: a monthly subscription that started at
09:00 on the 31st in Paris renews at 09:00 Paris time on the last day of shorter months and
on the 31st again when there is one, whatever daylight saving time did in between.

Wall-clock times that a time zone skips or repeats are resolved by one rule, used
everywhere in this module: a wall-clock time stands for the earliest instant at which the
local clock reads that time or later. So a time in a spring-forward gap resolves to the
first instant after the gap (02:30 on the day Paris jumps from 02:00 to 03:00 resolves to
03:00 CEST), and a time the clock shows twice in a fall-back resolves to its first
occurrence (the daylight-saving one). The rule is monotonic, which is what keeps boundaries
in order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import zoneinfo
from collections.abc import Iterator
from fractions import Fraction

from dateutil.relativedelta import relativedelta

from accrual.domain import timezones
from accrual.domain.clock import require_aware
from accrual.domain.errors import InvalidInput

UnknownTimeZone = timezones.UnknownTimeZone

_MICROSECOND = dt.timedelta(microseconds=1)
_MIDNIGHT = dt.time(0)


class InvalidPeriod(InvalidInput):
    title = "Invalid period"


class InvalidInterval(InvalidInput):
    title = "Invalid billing interval"


class BoundaryOutOfRange(InvalidInput):
    title = "Period boundary out of range"


def _span(start: dt.datetime, end: dt.datetime) -> str:
    return f"[{start.isoformat()}, {end.isoformat()})"


@dataclasses.dataclass(frozen=True, slots=True)
class Period:
    """The half-open span of time `[start, end)`, with both ends stored in UTC.

    Raises `InvalidPeriod` unless `start` is before `end`, and `clock.NaiveDatetime` when
    either has no time zone.
    """

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        start = require_aware(self.start, name="Period.start")
        end = require_aware(self.end, name="Period.end")
        if not start < end:
            raise InvalidPeriod(f"a period must start before it ends, got {_span(start, end)}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @property
    def duration(self) -> dt.timedelta:
        """The elapsed time from start to end."""
        return self.end - self.start

    def contains(self, instant: dt.datetime) -> bool:
        """Whether `instant` is in the period: at or after its start and before its end.

        Raises `clock.NaiveDatetime` when `instant` has no time zone.
        """
        at = require_aware(instant)
        return self.start <= at < self.end

    def overlaps(self, other: Period) -> bool:
        """Whether the two periods share at least one instant (touching ends do not)."""
        return self.start < other.end and other.start < self.end

    def intersection(self, other: Period) -> Period | None:
        """The instants the two periods share, or None when they share none."""
        start = max(self.start, other.start)
        end = min(self.end, other.end)
        return Period(start=start, end=end) if start < end else None

    def split_at(self, instant: dt.datetime) -> tuple[Period, Period]:
        """Return `[start, instant)` and `[instant, end)`.

        Raises `InvalidPeriod` unless `instant` is strictly inside the period (splitting at
        the start or the end would leave an empty part), `clock.NaiveDatetime` when it has
        no time zone.
        """
        at = require_aware(instant)
        if not self.start < at < self.end:
            raise InvalidPeriod(
                f"cannot split {_span(self.start, self.end)} at {at.isoformat()}, not strictly inside it"
            )
        return Period(start=self.start, end=at), Period(start=at, end=self.end)


class IntervalUnit(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


_MONTHS_PER_UNIT = {IntervalUnit.MONTH: 1, IntervalUnit.QUARTER: 3, IntervalUnit.YEAR: 12}
_DAYS_PER_UNIT = {IntervalUnit.DAY: 1, IntervalUnit.WEEK: 7}


@dataclasses.dataclass(frozen=True, slots=True)
class BillingInterval:
    """How often a subscription renews: `count` × `unit`, e.g. every 3 months.

    Raises `InvalidInterval` unless `unit` is an `IntervalUnit` and `count` an int ≥ 1.
    """

    unit: IntervalUnit
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.unit, IntervalUnit):
            raise InvalidInterval(f"unknown interval unit {self.unit!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InvalidInterval(f"interval count must be an int of at least 1, got {self.count!r}")


class ProrationUnit(enum.StrEnum):
    DAY = "day"
    SECOND = "second"


def _zone(tz: str) -> zoneinfo.ZoneInfo:
    return timezones.zone(tz)


def _out_of_range(what: str) -> BoundaryOutOfRange:
    return BoundaryOutOfRange(f"{what} is outside the supported range of dates (years 1 to 9999)")


def _local_wall(instant: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    try:
        local = instant.astimezone(zone)
    except OverflowError as exc:
        raise _out_of_range(f"the local time of {instant.isoformat()} in {zone.key}") from exc
    # Naive and fold=0, so that wall-clock times compare and add as plain calendar values.
    return local.replace(tzinfo=None, fold=0)


def _earliest_instant(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Return, in UTC, the earliest instant at which the clock in `zone` reads `wall` or later."""
    try:
        candidates = sorted({wall.replace(tzinfo=zone, fold=fold).astimezone(dt.UTC) for fold in (0, 1)})
    except OverflowError as exc:
        raise _out_of_range(f"{wall.isoformat()} in {zone.key}") from exc
    for candidate in candidates:
        if _local_wall(candidate, zone) == wall:
            return candidate
    # `wall` is in a gap. The two readings of it bracket the transition: the earlier one
    # shows a time before the gap, the later one a time after it; the earliest instant
    # reading `wall` or later is the transition itself, found by bisection to the
    # microsecond, the resolution of datetime.
    before, after = candidates[0], candidates[-1]
    while _local_wall(before, zone) >= wall:
        before -= dt.timedelta(days=1)
    while _local_wall(after, zone) < wall:
        after += dt.timedelta(days=1)
    while after - before > _MICROSECOND:
        middle = before + (after - before) // 2
        if _local_wall(middle, zone) >= wall:
            after = middle
        else:
            before = middle
    return after


def _anchor_wall(anchor: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """Return the wall-clock time that the boundaries of `anchor` repeat."""
    wall = _local_wall(anchor, zone)
    if wall.time() != _MIDNIGHT:
        # An anchor at the first instant of a local day whose midnight was skipped (some
        # zones change at 00:00) is a calendar anchor; its boundaries belong at the start
        # of their days, not at the hour the clock happened to jump to.
        midnight = dt.datetime.combine(wall.date(), _MIDNIGHT)
        if _earliest_instant(midnight, zone) == anchor:
            return midnight
    return wall


def _offset(interval: BillingInterval, n: int) -> relativedelta:
    steps = n * interval.count
    if interval.unit in _DAYS_PER_UNIT:
        return relativedelta(days=steps * _DAYS_PER_UNIT[interval.unit])
    return relativedelta(months=steps * _MONTHS_PER_UNIT[interval.unit])


def _boundary(
    anchor: dt.datetime, wall: dt.datetime, interval: BillingInterval, n: int, zone: zoneinfo.ZoneInfo
) -> dt.datetime:
    if n == 0:
        return anchor
    try:
        # Counted from the anchor every time, never from the previous boundary, so a clamp
        # (Jan 31 → Feb 28) does not stick: the boundary after Feb 28 is Mar 31.
        target = wall + _offset(interval, n)
    except (OverflowError, ValueError) as exc:
        raise _out_of_range(
            f"boundary {n} of every {interval.count} {interval.unit} from {anchor.isoformat()}"
        ) from exc
    return _earliest_instant(target, zone)


def _check_interval(interval: BillingInterval) -> None:
    if not isinstance(interval, BillingInterval):
        raise InvalidInterval(f"expected a BillingInterval, got {interval!r}")


def boundary(anchor: dt.datetime, interval: BillingInterval, n: int, *, tz: str) -> dt.datetime:
    """Return, in UTC, the `n`-th period boundary of a subscription anchored at `anchor`.

    Boundary 0 is `anchor` itself, even when it is the second of two instants showing the
    same local time. Boundary n (negative n counts back before the anchor) is
    the anchor's wall-clock time in `tz` plus n × `interval`, month ends clamped (an anchor
    on Jan 31 gives Feb 29 in 2028, Feb 28 in 2027, then Mar 31, Apr 30…), resolved to the
    earliest instant at which the local clock reads that time or later (see the module
    docstring). An anchor at the first instant of a local day whose midnight does not exist
    repeats as local midnight. Boundaries strictly increase with n, except across a whole
    calendar day a zone skipped (Pacific/Apia, 2011-12-30), where a daily boundary at that
    day's midnight coincides with the next.

    Raises `UnknownTimeZone`, `InvalidInterval`, `BoundaryOutOfRange` when the boundary
    falls outside years 1–9999, `clock.NaiveDatetime` when `anchor` has no time zone.
    """
    zone = _zone(tz)
    anchor_utc = require_aware(anchor, name="anchor")
    _check_interval(interval)
    if isinstance(n, bool) or not isinstance(n, int):
        raise InvalidInterval(f"the boundary number must be an int, got {n!r}")
    if n == 0:
        return anchor_utc
    return _boundary(anchor_utc, _anchor_wall(anchor_utc, zone), interval, n, zone)


def _estimate_index(wall: dt.datetime, local: dt.datetime, interval: BillingInterval) -> int:
    # Wall-clock arithmetic lands within a step or so of the answer whatever the distance,
    # so locating a period costs a handful of boundaries, never a walk from the anchor.
    if interval.unit in _DAYS_PER_UNIT:
        step = dt.timedelta(days=interval.count * _DAYS_PER_UNIT[interval.unit])
        return (local - wall) // step
    months = (local.year - wall.year) * 12 + (local.month - wall.month)
    return months // (interval.count * _MONTHS_PER_UNIT[interval.unit])


def _locate(
    anchor: dt.datetime, interval: BillingInterval, instant: dt.datetime, zone: zoneinfo.ZoneInfo
) -> tuple[int, dt.datetime, dt.datetime]:
    wall = _anchor_wall(anchor, zone)
    index = _estimate_index(wall, _local_wall(instant, zone), interval)
    start = _boundary(anchor, wall, interval, index, zone)
    while start > instant:
        index -= 1
        start = _boundary(anchor, wall, interval, index, zone)
    end = _boundary(anchor, wall, interval, index + 1, zone)
    while end <= instant:
        index += 1
        start, end = end, _boundary(anchor, wall, interval, index + 1, zone)
    return index, start, end


def period_index(anchor: dt.datetime, interval: BillingInterval, instant: dt.datetime, *, tz: str) -> int:
    """Return the number n of the period `[boundary(n), boundary(n + 1))` containing `instant`.

    0 is the period that starts at `anchor`; instants before the anchor give negative n.
    Raises as `boundary` does.
    """
    zone = _zone(tz)
    _check_interval(interval)
    index, _, _ = _locate(require_aware(anchor, name="anchor"), interval, require_aware(instant), zone)
    return index


def period_at(anchor: dt.datetime, interval: BillingInterval, instant: dt.datetime, *, tz: str) -> Period:
    """Return the billing period `[boundary(n), boundary(n + 1))` that contains `instant`.

    Works as fast for an instant decades from the anchor as for one next to it, and for
    instants before the anchor. Raises as `boundary` does.
    """
    zone = _zone(tz)
    _check_interval(interval)
    _, start, end = _locate(require_aware(anchor, name="anchor"), interval, require_aware(instant), zone)
    return Period(start=start, end=end)


def periods_between(
    anchor: dt.datetime, interval: BillingInterval, start: dt.datetime, end: dt.datetime, *, tz: str
) -> Iterator[Period]:
    """Return the consecutive billing periods that cover `[start, end)`, in order.

    The periods are whole: the first contains `start`, the last contains the instant just
    before `end`, and each ends where the next starts. A day the zone skipped entirely
    yields no period. Raises `InvalidPeriod` unless `start` is before `end`, and otherwise
    as `boundary` does; all checks happen on the call, not on the first iteration.
    """
    zone = _zone(tz)
    _check_interval(interval)
    anchor_utc = require_aware(anchor, name="anchor")
    covered = Period(start=start, end=end)
    index, first_start, first_end = _locate(anchor_utc, interval, covered.start, zone)
    wall = _anchor_wall(anchor_utc, zone)

    def generate() -> Iterator[Period]:
        number, period_start, period_end = index, first_start, first_end
        while period_start < covered.end:
            if period_end != period_start:
                yield Period(start=period_start, end=period_end)
            number += 1
            period_start, period_end = period_end, _boundary(anchor_utc, wall, interval, number + 1, zone)

    return generate()


def calendar_start(instant: dt.datetime, unit: IntervalUnit, *, tz: str) -> dt.datetime:
    """Return, in UTC, the start of the calendar `unit` containing `instant` in `tz`.

    Day: local midnight; week: Monday 00:00 (ISO weeks); month: the 1st at 00:00; quarter:
    Jan, Apr, Jul or Oct 1st at 00:00; year: Jan 1st at 00:00. When that midnight does not
    exist locally, the result is the first instant of that local date (the end of the gap);
    used as an anchor, it still repeats as local midnight. Raises `UnknownTimeZone`,
    `InvalidInterval` for an unknown unit, `BoundaryOutOfRange` outside years 1–9999,
    `clock.NaiveDatetime` when `instant` has no time zone.
    """
    zone = _zone(tz)
    if not isinstance(unit, IntervalUnit):
        raise InvalidInterval(f"unknown interval unit {unit!r}")
    day = _local_wall(require_aware(instant), zone).date()
    if unit is IntervalUnit.DAY:
        first_day = day
    elif unit is IntervalUnit.WEEK:
        # Cannot underflow: 0001-01-01, the first date there is, was a Monday.
        first_day = day - dt.timedelta(days=day.weekday())
    elif unit is IntervalUnit.MONTH:
        first_day = day.replace(day=1)
    elif unit is IntervalUnit.QUARTER:
        first_day = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    else:
        first_day = day.replace(month=1, day=1)
    return _earliest_instant(dt.datetime.combine(first_day, _MIDNIGHT), zone)


def proration_fraction(part: Period, whole: Period, *, unit: ProrationUnit, tz: str) -> Fraction:
    """Return the exact share of `whole` that `part` represents, for prorating a price.

    By `ProrationUnit.SECOND`, the ratio of the two durations. By `ProrationUnit.DAY`, the
    ratio of local calendar days in `tz`: days(p) = local date of p.end − local date of
    p.start, so [Aug 10, Sep 1) in a [Aug 1, Sep 1) month is 22/31; a part counts the local
    midnights it crosses, so a part within one local date counts 0 days and a part crossing
    one midnight counts 1, however short. Both units are additive: the fractions of the
    parts of a split sum to exactly the fraction of the whole.

    Raises `InvalidPeriod` when `part` is not within `whole`, or when prorating by day and
    `whole` does not cross a local midnight (it has no days to divide by);
    `UnknownTimeZone`; `InvalidInterval` for an unknown unit.
    """
    zone = _zone(tz)
    if not (whole.start <= part.start and part.end <= whole.end):
        raise InvalidPeriod(
            f"{_span(part.start, part.end)} is not within {_span(whole.start, whole.end)}, so cannot be "
            "prorated against it"
        )
    if unit is ProrationUnit.SECOND:
        return Fraction(part.duration // _MICROSECOND, whole.duration // _MICROSECOND)
    if unit is not ProrationUnit.DAY:
        raise InvalidInterval(f"unknown proration unit {unit!r}")

    def days(period: Period) -> int:
        return (_local_wall(period.end, zone).date() - _local_wall(period.start, zone).date()).days

    whole_days = days(whole)
    if whole_days == 0:
        raise InvalidPeriod(
            f"{_span(whole.start, whole.end)} starts and ends on the same local date in {tz}, "
            "so it has no days to prorate by"
        )
    return Fraction(days(part), whole_days)
