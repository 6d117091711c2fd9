"""Periods: half-open spans, billing boundaries in the customer's time zone, proration."""

from __future__ import annotations

import ast
import calendar
import datetime as dt
import functools
import itertools
import pathlib
import zoneinfo
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accrual.domain import clock, money, periods, timezones
from accrual.domain.errors import InvalidInput
from accrual.domain.periods import BillingInterval, IntervalUnit, Period, ProrationUnit

UTC = dt.UTC
US = dt.timedelta(microseconds=1)
MIDNIGHT = dt.time(0)
MONTHLY = BillingInterval(unit=IntervalUnit.MONTH)
YEARLY = BillingInterval(unit=IntervalUnit.YEAR)
DAILY = BillingInterval(unit=IntervalUnit.DAY)

PERIODS_SOURCE = pathlib.Path(periods.__file__)

# The zones the invariants are checked in: no DST, northern and southern DST, a half-hour
# offset, a half-hour DST shift, and a zone whose DST changes happen at midnight.
ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
]
YEARS = range(2023, 2031)
AWKWARD_TIMES = [
    dt.time(0, 0),
    dt.time(0, 30),
    dt.time(1, 30),
    dt.time(2, 0),
    dt.time(2, 15),
    dt.time(2, 30),
    dt.time(3, 0),
    dt.time(12, 0),
    dt.time(23, 0),
    dt.time(23, 30),
    dt.time(23, 59),
    dt.time(23, 59, 59, 999_999),
]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *rest: int) -> dt.datetime:
    second, microsecond = (*rest, 0, 0)[:2]
    return dt.datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def local_time(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """A naive wall-clock time, what `local` returns."""
    return dt.datetime.combine(dt.date(year, month, day), dt.time(hour, minute))


def local(instant: dt.datetime, tz: str) -> dt.datetime:
    """The naive wall-clock time of `instant` in `tz`."""
    # Through UTC: astimezone to an instant's own tzinfo would return a gap time unchanged.
    return instant.astimezone(UTC).astimezone(zoneinfo.ZoneInfo(tz)).replace(tzinfo=None, fold=0)


@functools.cache
def dst_change_dates(tz: str) -> tuple[dt.date, ...]:
    """Local dates on which `tz` changed its offset, with the day before each, in YEARS."""
    zone = zoneinfo.ZoneInfo(tz)
    found: list[dt.date] = []
    day = dt.date(YEARS[0], 1, 1)
    while day.year <= YEARS[-1]:
        following = day + dt.timedelta(days=1)
        noon = dt.datetime.combine(day, dt.time(12), tzinfo=zone).utcoffset()
        next_noon = dt.datetime.combine(following, dt.time(12), tzinfo=zone).utcoffset()
        if noon != next_noon:
            found += [day, following]
        day = following
    return tuple(found)


@st.composite
def anchors(draw: st.DrawFn) -> tuple[str, dt.datetime]:
    """A time zone and an awkward aware anchor in it."""
    tz = draw(st.sampled_from(ZONES))
    kind = draw(st.sampled_from(["month_end", "feb_29", "dst_change", "any"]))
    if kind == "dst_change" and dst_change_dates(tz):
        day = draw(st.sampled_from(dst_change_dates(tz)))
    elif kind == "feb_29":
        day = dt.date(draw(st.sampled_from([2024, 2028])), 2, 29)
    elif kind == "any":
        day = draw(st.dates(min_value=dt.date(YEARS[0], 1, 1), max_value=dt.date(YEARS[-1], 12, 31)))
    else:
        year = draw(st.sampled_from(YEARS))
        month = draw(st.integers(1, 12))
        day_of_month = draw(st.sampled_from([28, 29, 30, 31]))
        day = dt.date(year, month, min(day_of_month, calendar.monthrange(year, month)[1]))
    time = draw(st.one_of(st.sampled_from(AWKWARD_TIMES), st.times()))
    fold = draw(st.sampled_from([0, 1]))
    return tz, dt.datetime.combine(day, time, tzinfo=zoneinfo.ZoneInfo(tz)).replace(fold=fold)


def anchor_wall(anchor: dt.datetime, tz: str) -> dt.datetime:
    """The wall-clock time the boundaries must repeat, by the documented rule."""
    # In UTC: subtracting from a datetime in a zone would be wall-clock arithmetic.
    instant = anchor.astimezone(UTC)
    wall = local(instant, tz)
    first_instant_of_its_day = local(instant - US, tz).date() < wall.date()
    if wall.time() != MIDNIGHT and first_instant_of_its_day:
        return dt.datetime.combine(wall.date(), MIDNIGHT)
    return wall


def expected_wall(wall: dt.datetime, interval: BillingInterval, n: int) -> dt.datetime:
    """The anchor's wall-clock time plus n intervals, month ends clamped, computed by hand."""
    steps = n * interval.count
    if interval.unit is IntervalUnit.DAY:
        return wall + dt.timedelta(days=steps)
    if interval.unit is IntervalUnit.WEEK:
        return wall + dt.timedelta(weeks=steps)
    months = steps * {IntervalUnit.MONTH: 1, IntervalUnit.QUARTER: 3, IntervalUnit.YEAR: 12}[interval.unit]
    year, month_index = divmod(wall.year * 12 + wall.month - 1 + months, 12)
    month = month_index + 1
    return wall.replace(year=year, month=month, day=min(wall.day, calendar.monthrange(year, month)[1]))


def assert_resolves(instant: dt.datetime, wall: dt.datetime, tz: str) -> None:
    """`instant` is the earliest instant at which the clock in `tz` reads `wall` or later."""
    zone = zoneinfo.ZoneInfo(tz)
    readings = {wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
    existing = sorted(reading for reading in readings if local(reading, tz) == wall)
    if existing:
        assert instant == existing[0]
        assert local(instant, tz) == wall
    else:
        assert local(instant, tz) > wall
        assert local(instant - US, tz) < wall


# --- Period -----------------------------------------------------------------------------


def test_period_stores_utc() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    period = Period(start=dt.datetime(2026, 1, 1, tzinfo=paris), end=dt.datetime(2026, 2, 1, tzinfo=paris))
    assert period.start == utc(2025, 12, 31, 23)
    assert period.start.tzinfo is UTC
    assert period.end.tzinfo is UTC
    assert period.duration == dt.timedelta(days=31)
    assert period == Period(start=utc(2025, 12, 31, 23), end=utc(2026, 1, 31, 23))


@pytest.mark.parametrize(
    ("start", "end"), [(utc(2026, 1, 2), utc(2026, 1, 1)), (utc(2026, 1, 1), utc(2026, 1, 1))]
)
def test_period_must_start_before_it_ends(start: dt.datetime, end: dt.datetime) -> None:
    with pytest.raises(periods.InvalidPeriod):
        Period(start=start, end=end)


def test_period_refuses_naive_datetimes() -> None:
    with pytest.raises(clock.NaiveDatetime):
        Period(start=dt.datetime(2026, 1, 1), end=utc(2026, 2, 1))  # noqa: DTZ001
    with pytest.raises(clock.NaiveDatetime):
        Period(start=utc(2026, 1, 1), end=dt.datetime(2026, 2, 1))  # noqa: DTZ001


def test_period_is_half_open() -> None:
    january = Period(start=utc(2026, 1, 1), end=utc(2026, 2, 1))
    assert january.contains(utc(2026, 1, 1))
    assert january.contains(utc(2026, 1, 31, 23, 59, 59, 999_999))
    assert not january.contains(utc(2026, 2, 1))
    assert not january.contains(utc(2025, 12, 31, 23, 59, 59, 999_999))
    assert january.contains(dt.datetime(2026, 2, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")))
    with pytest.raises(clock.NaiveDatetime):
        january.contains(dt.datetime(2026, 1, 5))  # noqa: DTZ001


def test_overlaps_and_intersection() -> None:
    january = Period(start=utc(2026, 1, 1), end=utc(2026, 2, 1))
    february = Period(start=utc(2026, 2, 1), end=utc(2026, 3, 1))
    mid = Period(start=utc(2026, 1, 15), end=utc(2026, 2, 15))
    assert not january.overlaps(february)
    assert not february.overlaps(january)
    assert january.intersection(february) is None
    assert january.overlaps(mid)
    assert mid.overlaps(february)
    assert january.intersection(mid) == Period(start=utc(2026, 1, 15), end=utc(2026, 2, 1))
    assert mid.intersection(january) == january.intersection(mid)
    assert january.intersection(january) == january
    inner = Period(start=utc(2026, 1, 10), end=utc(2026, 1, 11))
    assert january.intersection(inner) == inner


def test_split_at() -> None:
    january = Period(start=utc(2026, 1, 1), end=utc(2026, 2, 1))
    before, after = january.split_at(utc(2026, 1, 15))
    assert before == Period(start=utc(2026, 1, 1), end=utc(2026, 1, 15))
    assert after == Period(start=utc(2026, 1, 15), end=utc(2026, 2, 1))
    for outside in (utc(2026, 1, 1), utc(2026, 2, 1), utc(2025, 6, 1), utc(2026, 6, 1)):
        with pytest.raises(periods.InvalidPeriod):
            january.split_at(outside)


def test_period_is_immutable() -> None:
    january = Period(start=utc(2026, 1, 1), end=utc(2026, 2, 1))
    with pytest.raises(AttributeError):
        january.start = utc(2026, 1, 2)  # type: ignore[misc]


# --- BillingInterval --------------------------------------------------------------------


def test_billing_interval_defaults_to_one() -> None:
    assert BillingInterval(unit=IntervalUnit.QUARTER).count == 1
    assert IntervalUnit("month") is IntervalUnit.MONTH


@pytest.mark.parametrize(
    ("unit", "count"),
    [
        (IntervalUnit.MONTH, 0),
        (IntervalUnit.MONTH, -1),
        (IntervalUnit.MONTH, True),
        (IntervalUnit.DAY, 1.0),
        (IntervalUnit.DAY, "2"),
        ("month", 1),
        ("fortnight", 1),
    ],
)
def test_billing_interval_is_validated(unit: object, count: object) -> None:
    with pytest.raises(periods.InvalidInterval) as raised:
        BillingInterval(unit=unit, count=count)  # type: ignore[arg-type]
    assert isinstance(raised.value, InvalidInput)


# --- time zones -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tz",
    [
        "Europe/Nowhere",
        "europe/paris",
        "",
        " UTC",
        "Europe",
        "../etc/passwd",
        "localtime",
        "posixrules",
        "Factory",
        "right/UTC",
        "posix/Europe/Paris",
    ],
)
def test_unknown_time_zone(tz: str) -> None:
    with pytest.raises(periods.UnknownTimeZone):
        periods.boundary(utc(2026, 1, 1), MONTHLY, 1, tz=tz)
    with pytest.raises(periods.UnknownTimeZone):
        periods.calendar_start(utc(2026, 1, 1), IntervalUnit.DAY, tz=tz)


def test_unknown_time_zone_is_the_shared_error() -> None:
    assert periods.UnknownTimeZone is timezones.UnknownTimeZone
    assert issubclass(periods.UnknownTimeZone, InvalidInput)


# --- boundaries: examples ---------------------------------------------------------------


def test_month_end_anchor_clamps_and_recovers() -> None:
    anchor = utc(2028, 1, 31, 9)
    assert [periods.boundary(anchor, MONTHLY, n, tz="UTC") for n in range(6)] == [
        utc(2028, 1, 31, 9),
        utc(2028, 2, 29, 9),
        utc(2028, 3, 31, 9),
        utc(2028, 4, 30, 9),
        utc(2028, 5, 31, 9),
        utc(2028, 6, 30, 9),
    ]
    assert periods.boundary(utc(2027, 1, 31), MONTHLY, 1, tz="UTC") == utc(2027, 2, 28)
    assert periods.boundary(utc(2027, 1, 31), MONTHLY, 2, tz="UTC") == utc(2027, 3, 31)


def test_negative_boundaries_count_back_from_the_anchor() -> None:
    anchor = utc(2028, 3, 31)
    assert periods.boundary(anchor, MONTHLY, -1, tz="UTC") == utc(2028, 2, 29)
    assert periods.boundary(anchor, MONTHLY, -2, tz="UTC") == utc(2028, 1, 31)
    assert periods.boundary(anchor, MONTHLY, -13, tz="UTC") == utc(2027, 2, 28)


def test_leap_day_anchor_yearly() -> None:
    anchor = utc(2028, 2, 29, 12)
    assert [periods.boundary(anchor, YEARLY, n, tz="UTC") for n in range(5)] == [
        utc(2028, 2, 29, 12),
        utc(2029, 2, 28, 12),
        utc(2030, 2, 28, 12),
        utc(2031, 2, 28, 12),
        utc(2032, 2, 29, 12),
    ]


def test_quarterly_and_weekly_and_multi_count() -> None:
    anchor = utc(2026, 11, 30)
    quarterly = BillingInterval(unit=IntervalUnit.QUARTER)
    assert periods.boundary(anchor, quarterly, 1, tz="UTC") == utc(2027, 2, 28)
    assert periods.boundary(anchor, quarterly, 2, tz="UTC") == utc(2027, 5, 30)
    fortnightly = BillingInterval(unit=IntervalUnit.WEEK, count=2)
    assert periods.boundary(anchor, fortnightly, 3, tz="UTC") == utc(2027, 1, 11)
    biennial = BillingInterval(unit=IntervalUnit.YEAR, count=2)
    assert periods.boundary(utc(2024, 2, 29), biennial, 1, tz="UTC") == utc(2026, 2, 28)
    assert periods.boundary(utc(2024, 2, 29), biennial, 2, tz="UTC") == utc(2028, 2, 29)


def test_boundary_keeps_local_wall_time_across_dst() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    anchor = dt.datetime(2026, 1, 15, 9, 0, tzinfo=paris)
    july = periods.boundary(anchor, MONTHLY, 6, tz="Europe/Paris")
    assert july == utc(2026, 7, 15, 7)
    assert local(july, "Europe/Paris") == local_time(2026, 7, 15, 9, 0)


def test_monthly_anchor_at_0230_paris_lands_in_the_march_gap() -> None:
    # Paris springs forward from 02:00 to 03:00 on 2026-03-29: 02:30 does not exist that
    # day, so the boundary is the first instant after the gap, 03:00 CEST (01:00 UTC).
    anchor = dt.datetime(2026, 1, 29, 2, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    march = periods.boundary(anchor, MONTHLY, 2, tz="Europe/Paris")
    assert march == utc(2026, 3, 29, 1, 0)
    assert local(march, "Europe/Paris") == local_time(2026, 3, 29, 3, 0)
    february = periods.boundary(anchor, MONTHLY, 1, tz="Europe/Paris")
    april = periods.boundary(anchor, MONTHLY, 3, tz="Europe/Paris")
    assert february == utc(2026, 2, 28, 1, 30)  # clamped to Feb 28, 02:30 CET
    assert april == utc(2026, 4, 29, 0, 30)
    assert february < march < april
    assert periods.period_at(anchor, MONTHLY, utc(2026, 3, 29, 0, 59), tz="Europe/Paris") == Period(
        start=february, end=march
    )


def test_ambiguous_boundary_takes_the_first_occurrence() -> None:
    # New York falls back from 02:00 EDT to 01:00 EST on 2026-11-01: 01:30 happens twice.
    new_york = zoneinfo.ZoneInfo("America/New_York")
    anchor = dt.datetime(2026, 10, 1, 1, 30, tzinfo=new_york)
    november = periods.boundary(anchor, MONTHLY, 1, tz="America/New_York")
    assert november == utc(2026, 11, 1, 5, 30)  # 01:30 EDT


def test_anchor_at_the_second_occurrence_is_boundary_zero_itself() -> None:
    new_york = zoneinfo.ZoneInfo("America/New_York")
    anchor = dt.datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=new_york)
    assert anchor.astimezone(UTC) == utc(2026, 11, 1, 6, 30)  # 01:30 EST
    assert periods.boundary(anchor, DAILY, 0, tz="America/New_York") == utc(2026, 11, 1, 6, 30)
    assert periods.boundary(anchor, DAILY, 1, tz="America/New_York") == utc(2026, 11, 2, 6, 30)
    assert periods.boundary(anchor, DAILY, -1, tz="America/New_York") == utc(2026, 10, 31, 5, 30)
    assert periods.period_at(anchor, DAILY, utc(2026, 11, 1, 6, 0), tz="America/New_York") == Period(
        start=utc(2026, 10, 31, 5, 30), end=utc(2026, 11, 1, 6, 30)
    )


def test_calendar_anchor_whose_midnight_was_skipped_repeats_at_midnight() -> None:
    # Santiago springs forward at midnight on 2026-09-06: that day starts at 01:00.
    anchor = periods.calendar_start(utc(2026, 9, 6, 15), IntervalUnit.DAY, tz="America/Santiago")
    assert local(anchor, "America/Santiago") == local_time(2026, 9, 6, 1, 0)
    next_day = periods.boundary(anchor, DAILY, 1, tz="America/Santiago")
    assert local(next_day, "America/Santiago") == local_time(2026, 9, 7, 0, 0)
    day_before = periods.boundary(anchor, DAILY, -1, tz="America/Santiago")
    assert local(day_before, "America/Santiago") == local_time(2026, 9, 5, 0, 0)


def test_boundary_refuses_bad_arguments() -> None:
    with pytest.raises(clock.NaiveDatetime):
        periods.boundary(dt.datetime(2026, 1, 1), MONTHLY, 1, tz="UTC")  # noqa: DTZ001
    with pytest.raises(periods.InvalidInterval):
        periods.boundary(utc(2026, 1, 1), MONTHLY, True, tz="UTC")
    with pytest.raises(periods.InvalidInterval):
        periods.boundary(utc(2026, 1, 1), "month", 1, tz="UTC")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("anchor", "n", "tz"),
    [
        (utc(9999, 12, 1), 1, "UTC"),
        (utc(9999, 12, 31, 20), 1, "Asia/Tokyo"),
        (utc(1, 1, 1, 1), -1, "UTC"),
        (utc(2026, 1, 1), 10**6, "UTC"),
        (utc(2026, 1, 1), -(10**30), "UTC"),
    ],
)
def test_boundary_out_of_range(anchor: dt.datetime, n: int, tz: str) -> None:
    with pytest.raises(periods.BoundaryOutOfRange):
        periods.boundary(anchor, MONTHLY, n, tz=tz)


def test_a_skipped_calendar_day_yields_no_daily_period() -> None:
    # Samoa skipped 2011-12-30 entirely, moving from UTC-10 to UTC+14.
    anchor = dt.datetime(2011, 12, 28, tzinfo=zoneinfo.ZoneInfo("Pacific/Apia"))
    bounds = [periods.boundary(anchor, DAILY, n, tz="Pacific/Apia") for n in range(5)]
    assert bounds[2] == bounds[3] == utc(2011, 12, 30, 10)
    tiling = list(periods.periods_between(anchor, DAILY, bounds[0], bounds[4], tz="Pacific/Apia"))
    assert tiling == [
        Period(start=bounds[0], end=bounds[1]),
        Period(start=bounds[1], end=bounds[2]),
        Period(start=bounds[3], end=bounds[4]),
    ]
    assert periods.period_at(anchor, DAILY, bounds[3], tz="Pacific/Apia") == tiling[2]
    assert periods.period_at(anchor, DAILY, bounds[3] - US, tz="Pacific/Apia") == tiling[1]


# --- period_at and periods_between: examples --------------------------------------------


def test_period_at_contains_the_instant() -> None:
    anchor = utc(2026, 1, 31, 9)
    assert periods.period_at(anchor, MONTHLY, utc(2026, 3, 1), tz="UTC") == Period(
        start=utc(2026, 2, 28, 9), end=utc(2026, 3, 31, 9)
    )
    assert periods.period_at(anchor, MONTHLY, utc(2026, 2, 28, 9), tz="UTC").start == utc(2026, 2, 28, 9)
    assert periods.period_at(anchor, MONTHLY, utc(2025, 12, 31, 9), tz="UTC") == Period(
        start=utc(2025, 12, 31, 9), end=utc(2026, 1, 31, 9)
    )
    assert periods.period_index(anchor, MONTHLY, utc(2025, 12, 31, 9), tz="UTC") == -1
    assert periods.period_index(anchor, MONTHLY, anchor, tz="UTC") == 0


def test_period_at_far_from_the_anchor_computes_a_handful_of_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    real = periods._boundary

    def counting(*args: object) -> dt.datetime:
        nonlocal calls
        calls += 1
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(periods, "_boundary", counting)
    anchor = dt.datetime(2026, 1, 31, 2, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    for instant in (utc(2400, 3, 29, 0, 45), utc(1700, 7, 1), utc(9000, 1, 1)):
        calls = 0
        found = periods.period_at(anchor, DAILY, instant, tz="Europe/Paris")
        assert found.contains(instant)
        assert calls <= 6
        calls = 0
        found = periods.period_at(anchor, MONTHLY, instant, tz="Europe/Paris")
        assert found.contains(instant)
        assert calls <= 6


def test_periods_between_yields_whole_periods() -> None:
    anchor = utc(2026, 1, 15)
    found = list(periods.periods_between(anchor, MONTHLY, utc(2026, 2, 1), utc(2026, 4, 15), tz="UTC"))
    assert found == [
        Period(start=utc(2026, 1, 15), end=utc(2026, 2, 15)),
        Period(start=utc(2026, 2, 15), end=utc(2026, 3, 15)),
        Period(start=utc(2026, 3, 15), end=utc(2026, 4, 15)),
    ]
    assert list(periods.periods_between(anchor, MONTHLY, utc(2026, 1, 15), utc(2026, 1, 16), tz="UTC")) == [
        Period(start=utc(2026, 1, 15), end=utc(2026, 2, 15))
    ]


def test_periods_between_checks_its_arguments_on_the_call() -> None:
    with pytest.raises(periods.InvalidPeriod):
        periods.periods_between(utc(2026, 1, 1), MONTHLY, utc(2026, 3, 1), utc(2026, 2, 1), tz="UTC")
    with pytest.raises(periods.InvalidPeriod):
        periods.periods_between(utc(2026, 1, 1), MONTHLY, utc(2026, 3, 1), utc(2026, 3, 1), tz="UTC")
    with pytest.raises(periods.UnknownTimeZone):
        periods.periods_between(utc(2026, 1, 1), MONTHLY, utc(2026, 1, 1), utc(2026, 3, 1), tz="Mars/Olympus")


# --- calendar_start ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        (IntervalUnit.DAY, utc(2026, 8, 9, 22)),
        (IntervalUnit.WEEK, utc(2026, 8, 9, 22)),  # 2026-08-10 is a Monday
        (IntervalUnit.MONTH, utc(2026, 7, 31, 22)),
        (IntervalUnit.QUARTER, utc(2026, 6, 30, 22)),
        (IntervalUnit.YEAR, utc(2025, 12, 31, 23)),
    ],
)
def test_calendar_start_in_paris(unit: IntervalUnit, expected: dt.datetime) -> None:
    assert periods.calendar_start(utc(2026, 8, 10, 15), unit, tz="Europe/Paris") == expected


@pytest.mark.parametrize(
    ("instant", "unit", "tz", "expected"),
    [
        # The local date differs from the UTC date.
        (utc(2026, 3, 1, 3), IntervalUnit.MONTH, "America/New_York", utc(2026, 2, 1, 5)),
        (utc(2026, 6, 30, 20), IntervalUnit.QUARTER, "Australia/Sydney", utc(2026, 6, 30, 14)),
        (utc(2026, 12, 31, 19), IntervalUnit.YEAR, "Asia/Kolkata", utc(2026, 12, 31, 18, 30)),
        # Across a DST change: the unit started under the other offset.
        (utc(2026, 3, 30, 12), IntervalUnit.MONTH, "Europe/Paris", utc(2026, 2, 28, 23)),
        (utc(2026, 3, 29, 12), IntervalUnit.DAY, "Europe/Paris", utc(2026, 3, 28, 23)),
        (utc(2026, 3, 30, 12), IntervalUnit.DAY, "Europe/Paris", utc(2026, 3, 29, 22)),
        (utc(2026, 11, 5), IntervalUnit.WEEK, "America/New_York", utc(2026, 11, 2, 5)),
        (utc(2026, 11, 1, 12), IntervalUnit.WEEK, "America/New_York", utc(2026, 10, 26, 4)),
        (utc(2026, 4, 10), IntervalUnit.QUARTER, "Australia/Sydney", utc(2026, 3, 31, 13)),
        # Midnight skipped: the first instant of the local date.
        (utc(2026, 9, 6, 15), IntervalUnit.DAY, "America/Santiago", utc(2026, 9, 6, 4)),
        (utc(2024, 3, 31, 12), IntervalUnit.DAY, "Asia/Beirut", utc(2024, 3, 30, 22)),
        # Sunday belongs to the ISO week that started on Monday.
        (utc(2026, 8, 16, 12), IntervalUnit.WEEK, "UTC", utc(2026, 8, 10)),
    ],
)
def test_calendar_start(instant: dt.datetime, unit: IntervalUnit, tz: str, expected: dt.datetime) -> None:
    assert periods.calendar_start(instant, unit, tz=tz) == expected


def test_calendar_start_refuses_unknown_unit() -> None:
    with pytest.raises(periods.InvalidInterval):
        periods.calendar_start(utc(2026, 1, 1), "month", tz="UTC")  # type: ignore[arg-type]
    with pytest.raises(periods.BoundaryOutOfRange):
        periods.calendar_start(utc(1, 1, 1, 5), IntervalUnit.DAY, tz="Asia/Tokyo")
    with pytest.raises(periods.BoundaryOutOfRange):
        periods.calendar_start(utc(1, 1, 1, 1), IntervalUnit.WEEK, tz="America/New_York")


# --- proration: examples ----------------------------------------------------------------


def test_golden_calendar_proration_from_august_10() -> None:
    tz = "America/New_York"
    started = dt.datetime(2026, 8, 10, 14, 37, tzinfo=zoneinfo.ZoneInfo(tz))
    anchor = periods.calendar_start(started, IntervalUnit.MONTH, tz=tz)
    whole = periods.period_at(anchor, MONTHLY, started, tz=tz)
    assert local(whole.start, tz) == local_time(2026, 8, 1)
    assert local(whole.end, tz) == local_time(2026, 9, 1)
    part = Period(start=started, end=whole.end)
    fraction = periods.proration_fraction(part, whole, unit=ProrationUnit.DAY, tz=tz)
    assert fraction == Fraction(22, 31)
    assert money.round_half_up_to_minor(fraction * 50, money.currency("USD")) == money.parse_decimal("35.48")


def test_golden_upgrade_on_january_15() -> None:
    tz = "Europe/Paris"
    paris = zoneinfo.ZoneInfo(tz)
    anchor = dt.datetime(2026, 1, 1, tzinfo=paris)
    january = periods.period_at(anchor, MONTHLY, anchor, tz=tz)
    used, rest = january.split_at(dt.datetime(2026, 1, 15, tzinfo=paris))
    eur = money.currency("EUR")
    used_fraction = periods.proration_fraction(used, january, unit=ProrationUnit.DAY, tz=tz)
    rest_fraction = periods.proration_fraction(rest, january, unit=ProrationUnit.DAY, tz=tz)
    assert used_fraction == Fraction(14, 31)
    assert rest_fraction == Fraction(17, 31)
    assert str(money.round_half_up_to_minor(used_fraction * 100, eur)) == "45.16"
    assert str(money.round_half_up_to_minor(rest_fraction * 200, eur)) == "109.68"


def test_day_proration_counts_local_days() -> None:
    # A New York March is 31 local days though it lasts 31 days minus an hour.
    tz = "America/New_York"
    march = Period(start=utc(2026, 3, 1, 5), end=utc(2026, 4, 1, 4))
    first_week = Period(start=utc(2026, 3, 1, 5), end=utc(2026, 3, 8, 5))
    assert periods.proration_fraction(first_week, march, unit=ProrationUnit.DAY, tz=tz) == Fraction(7, 31)
    by_second = periods.proration_fraction(first_week, march, unit=ProrationUnit.SECOND, tz=tz)
    assert by_second == Fraction(7 * 24, 31 * 24 - 1)


def test_second_proration_is_the_exact_ratio_of_durations() -> None:
    whole = Period(start=utc(2026, 1, 1), end=utc(2026, 1, 1, 0, 0, 3))
    part = Period(start=utc(2026, 1, 1), end=utc(2026, 1, 1, 0, 0, 1, 1))
    assert periods.proration_fraction(part, whole, unit=ProrationUnit.SECOND, tz="UTC") == Fraction(
        1_000_001, 3_000_000
    )
    assert periods.proration_fraction(whole, whole, unit=ProrationUnit.SECOND, tz="UTC") == 1


def test_proration_refuses_a_part_outside_the_whole() -> None:
    january = Period(start=utc(2026, 1, 1), end=utc(2026, 2, 1))
    straddling = Period(start=utc(2026, 1, 20), end=utc(2026, 2, 10))
    for unit in ProrationUnit:
        with pytest.raises(periods.InvalidPeriod):
            periods.proration_fraction(straddling, january, unit=unit, tz="UTC")
        with pytest.raises(periods.InvalidPeriod):
            periods.proration_fraction(january, straddling, unit=unit, tz="UTC")


def test_day_proration_refuses_a_whole_without_days() -> None:
    hours = Period(start=utc(2026, 1, 1, 1), end=utc(2026, 1, 1, 20))
    with pytest.raises(periods.InvalidPeriod):
        periods.proration_fraction(hours, hours, unit=ProrationUnit.DAY, tz="UTC")
    assert periods.proration_fraction(hours, hours, unit=ProrationUnit.SECOND, tz="UTC") == 1
    # The same hours cross midnight in Sydney, so there they have a day.
    assert periods.proration_fraction(hours, hours, unit=ProrationUnit.DAY, tz="Australia/Sydney") == 1


def test_proration_refuses_unknown_unit_and_zone() -> None:
    january = Period(start=utc(2026, 1, 1), end=utc(2026, 2, 1))
    with pytest.raises(periods.InvalidInterval):
        periods.proration_fraction(january, january, unit="day", tz="UTC")  # type: ignore[arg-type]
    with pytest.raises(periods.UnknownTimeZone):
        periods.proration_fraction(january, january, unit=ProrationUnit.DAY, tz="Nowhere")


# --- properties -------------------------------------------------------------------------

INTERVALS = [BillingInterval(unit=unit, count=count) for unit in IntervalUnit for count in (1, 2, 3)]
FIRST, LAST = -3, 14


@pytest.mark.parametrize("interval", INTERVALS, ids=lambda i: f"{i.count}-{i.unit}")
@settings(max_examples=40, deadline=None)
@given(case=anchors(), data=st.data())
def test_boundaries_tile_and_repeat_the_anchor_wall_time(
    interval: BillingInterval, case: tuple[str, dt.datetime], data: st.DataObject
) -> None:
    tz, anchor = case
    numbers = range(FIRST, LAST + 1)
    bounds = [periods.boundary(anchor, interval, n, tz=tz) for n in numbers]
    assert bounds[-FIRST] == anchor.astimezone(UTC)
    assert all(b.tzinfo is UTC for b in bounds)
    assert all(earlier < later for earlier, later in itertools.pairwise(bounds))
    wall = anchor_wall(anchor, tz)
    for n, instant in zip(numbers, bounds, strict=True):
        if n != 0:
            assert_resolves(instant, expected_wall(wall, interval, n), tz)

    tiling = list(periods.periods_between(anchor, interval, bounds[0], bounds[-1], tz=tz))
    assert tiling == [Period(start=s, end=e) for s, e in itertools.pairwise(bounds)]

    index = data.draw(st.integers(0, len(tiling) - 1))
    period = tiling[index]
    offset = data.draw(st.integers(0, period.duration // US - 1))
    for instant in (period.start, period.end - US, period.start + offset * US):
        assert periods.period_at(anchor, interval, instant, tz=tz) == period
        assert periods.period_index(anchor, interval, instant, tz=tz) == FIRST + index


@settings(max_examples=100, deadline=None)
@given(
    case=anchors(),
    interval=st.sampled_from(INTERVALS),
    instant=st.datetimes(
        min_value=local_time(1900, 1, 1), max_value=local_time(2200, 1, 1), timezones=st.just(UTC)
    ),
)
def test_period_at_far_from_the_anchor_agrees_with_boundaries(
    case: tuple[str, dt.datetime], interval: BillingInterval, instant: dt.datetime
) -> None:
    tz, anchor = case
    period = periods.period_at(anchor, interval, instant, tz=tz)
    index = periods.period_index(anchor, interval, instant, tz=tz)
    assert period.contains(instant)
    assert period.start == periods.boundary(anchor, interval, index, tz=tz)
    assert period.end == periods.boundary(anchor, interval, index + 1, tz=tz)


@settings(max_examples=100, deadline=None)
@given(case=anchors(), interval=st.sampled_from(INTERVALS), data=st.data())
def test_proration_of_a_split_sums_to_exactly_one(
    case: tuple[str, dt.datetime], interval: BillingInterval, data: st.DataObject
) -> None:
    tz, anchor = case
    whole = periods.period_at(anchor, interval, anchor, tz=tz)
    ticks = whole.duration // US
    cuts = sorted(set(data.draw(st.lists(st.integers(1, ticks - 1), min_size=1, max_size=4))))
    edges = [whole.start, *(whole.start + cut * US for cut in cuts), whole.end]
    parts = [Period(start=s, end=e) for s, e in itertools.pairwise(edges)]
    for unit in ProrationUnit:
        fractions = [periods.proration_fraction(part, whole, unit=unit, tz=tz) for part in parts]
        assert sum(fractions) == 1
        assert all(0 <= fraction <= 1 for fraction in fractions)
        first, second = whole.split_at(edges[1])
        pair = [periods.proration_fraction(p, whole, unit=unit, tz=tz) for p in (first, second)]
        assert pair[0] + pair[1] == 1


@settings(max_examples=100, deadline=None)
@given(case=anchors())
def test_a_year_split_into_its_months_prorates_to_exactly_one(case: tuple[str, dt.datetime]) -> None:
    tz, anchor = case
    year = Period(start=anchor, end=periods.boundary(anchor, YEARLY, 1, tz=tz))
    months = [periods.boundary(anchor, MONTHLY, n, tz=tz) for n in range(13)]
    assert months[0] == year.start
    assert months[12] == year.end
    parts = [Period(start=s, end=e) for s, e in itertools.pairwise(months)]
    by_day = [periods.proration_fraction(part, year, unit=ProrationUnit.DAY, tz=tz) for part in parts]
    assert sum(by_day) == 1
    assert (
        sum(periods.proration_fraction(part, year, unit=ProrationUnit.SECOND, tz=tz) for part in parts) == 1
    )


@settings(max_examples=100, deadline=None)
@given(
    tz=st.sampled_from([*ZONES, "Asia/Beirut", "America/Havana", "America/Asuncion"]),
    unit=st.sampled_from(IntervalUnit),
    instant=st.datetimes(
        min_value=local_time(2000, 1, 1), max_value=local_time(2040, 1, 1), timezones=st.just(UTC)
    ),
)
def test_calendar_start_is_the_first_instant_of_the_local_unit(
    tz: str, unit: IntervalUnit, instant: dt.datetime
) -> None:
    start = periods.calendar_start(instant, unit, tz=tz)
    assert start <= instant
    first_day = local(start, tz).date()
    day = local(instant, tz).date()
    assert first_day <= day
    assert local(start - US, tz).date() < first_day
    assert periods.calendar_start(start, unit, tz=tz) == start
    if unit is IntervalUnit.DAY:
        assert first_day == day
    elif unit is IntervalUnit.WEEK:
        assert first_day.isoweekday() == 1
        assert (day - first_day).days < 7
    else:
        months = {IntervalUnit.MONTH: 1, IntervalUnit.QUARTER: 3, IntervalUnit.YEAR: 12}[unit]
        assert first_day.day == 1
        assert (first_day.month - 1) % months == 0
        assert first_day.year == day.year
        assert 0 <= day.month - first_day.month < months


@settings(max_examples=100, deadline=None)
@given(
    tz=st.sampled_from([*ZONES, "Asia/Beirut", "America/Havana", "America/Asuncion"]),
    unit=st.sampled_from(IntervalUnit),
    instant=st.datetimes(
        min_value=local_time(2000, 1, 1), max_value=local_time(2040, 1, 1), timezones=st.just(UTC)
    ),
)
def test_calendar_billing_boundaries_are_calendar_starts(
    tz: str, unit: IntervalUnit, instant: dt.datetime
) -> None:
    anchor = periods.calendar_start(instant, unit, tz=tz)
    interval = BillingInterval(unit=unit)
    for n in range(-2, 14):
        edge = periods.boundary(anchor, interval, n, tz=tz)
        assert periods.calendar_start(edge, unit, tz=tz) == edge


# --- project bans -----------------------------------------------------------------------


def test_periods_module_is_pure() -> None:
    tree = ast.parse(PERIODS_SOURCE.read_text(), filename=str(PERIODS_SOURCE))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"float", "round", "open", "print"}, node.lineno
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in {"now", "today", "utcnow", "timestamp", "monotonic"}, node.lineno
            owner = node.func.value
            assert not (isinstance(owner, ast.Name) and owner.id == "time"), node.lineno
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            for name in names:
                assert name.split(".")[0] not in {"sqlalchemy", "psycopg", "fastapi", "httpx", "time"}, name
