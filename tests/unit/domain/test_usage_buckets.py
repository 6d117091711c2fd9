"""Hourly usage buckets on a subscription's grid."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from hypothesis import given
from hypothesis import strategies as st

from accrual.domain.usage import bucket_end_at_or_after, bucket_start

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)


def test_a_grid_offset_into_the_hour() -> None:
    offset = dt.timedelta(minutes=37, seconds=12.5)
    at = dt.datetime(2026, 3, 5, 9, 10, tzinfo=UTC)
    assert bucket_start(at, offset) == dt.datetime(2026, 3, 5, 8, 37, 12, 500_000, tzinfo=UTC)
    assert bucket_end_at_or_after(at, offset) == dt.datetime(2026, 3, 5, 9, 37, 12, 500_000, tzinfo=UTC)
    on_grid = dt.datetime(2026, 3, 5, 9, 37, 12, 500_000, tzinfo=UTC)
    assert bucket_start(on_grid, offset) == on_grid == bucket_end_at_or_after(on_grid, offset)


def test_an_instant_in_a_zone_is_bucketed_by_its_absolute_time() -> None:
    """01:10 in New York on the night clocks go back happens twice; the second is 06:10 UTC."""
    second = dt.datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    assert second.astimezone(UTC) == dt.datetime(2026, 11, 1, 6, 10, tzinfo=UTC)
    assert bucket_start(second, dt.timedelta(0)) == dt.datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert bucket_end_at_or_after(second, dt.timedelta(0)) == dt.datetime(2026, 11, 1, 7, tzinfo=UTC)


@given(
    at=st.datetimes(
        min_value=dt.datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
        max_value=dt.datetime(2099, 12, 31),  # noqa: DTZ001
        timezones=st.sampled_from(
            [UTC, zoneinfo.ZoneInfo("Asia/Kolkata"), zoneinfo.ZoneInfo("Europe/Paris")]
        ),
    ),
    offset_us=st.integers(0, 3_599_999_999),
)
def test_every_instant_lies_in_exactly_one_bucket_of_the_grid(at: dt.datetime, offset_us: int) -> None:
    offset = dt.timedelta(microseconds=offset_us)
    start = bucket_start(at, offset)
    assert start <= at < start + HOUR
    assert (start - dt.datetime(2000, 1, 1, tzinfo=UTC) - offset) % HOUR == dt.timedelta(0)
    end = bucket_end_at_or_after(at, offset)
    assert end in (start, start + HOUR)
    assert (end == start) == (start == at)
