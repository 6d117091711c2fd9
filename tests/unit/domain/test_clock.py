from __future__ import annotations

import datetime as dt

import pytest

from accrual.domain.clock import FixedClock, NaiveDatetime, require_aware


def test_fixed_clock_reads_its_instant_in_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    clock = FixedClock(dt.datetime(2026, 1, 1, 1, 0, tzinfo=paris))
    assert clock.now() == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert clock.now().tzinfo is dt.UTC


def test_naive_instants_are_refused() -> None:
    with pytest.raises(NaiveDatetime):
        require_aware(dt.datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
