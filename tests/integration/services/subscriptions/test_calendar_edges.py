"""Month ends, Feb 29 and DST changes, in the customer's time zone, through the services."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from accrual.services import subscriptions
from tests.integration.services.subscriptions.conftest import World


def local(when: dt.datetime, tz: str) -> str:
    return when.astimezone(zoneinfo.ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _boundaries(world: World, sid: object) -> list[dt.datetime]:
    rows = subscriptions.billing_points(world.db, tenant_id=world.tenant_id, subscription_id=sid)  # type: ignore[arg-type]
    return [r.at for r in rows]


@pytest.mark.parametrize(
    ("tz", "start_local"),
    [
        ("Europe/Paris", "2028-01-31 09:00"),
        ("America/New_York", "2028-01-31 23:30"),
        ("Australia/Sydney", "2028-01-31 00:15"),
        ("Asia/Kolkata", "2028-01-31 12:00"),
    ],
)
def test_anniversary_on_the_31st_clamps_and_keeps_local_time(world: World, tz: str, start_local: str) -> None:
    start = dt.datetime.fromisoformat(start_local).replace(tzinfo=zoneinfo.ZoneInfo(tz)).astimezone(dt.UTC)
    world.customer(timezone=tz)
    sub = world.subscribe(plan="basic", start=start.isoformat())
    world.advance(start + dt.timedelta(days=200))
    hour = start_local[-5:]
    assert [local(b, tz) for b in _boundaries(world, sub.subscription_id)[:6]] == [
        f"2028-01-31 {hour}",
        f"2028-02-29 {hour}",  # Feb 29 in a leap year
        f"2028-03-31 {hour}",  # back to the 31st: repeated from the anchor, not from Feb 29
        f"2028-04-30 {hour}",
        f"2028-05-31 {hour}",
        f"2028-06-30 {hour}",
    ]


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York", "Australia/Sydney"])
def test_calendar_billing_follows_local_midnights_across_dst(world: World, tz: str) -> None:
    world.customer(timezone=tz)
    start = dt.datetime(2026, 2, 10, 12, tzinfo=dt.UTC)
    world.advance(start)
    sub = world.subscribe(plan="basic", billing="calendar")
    world.advance(dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
    boundaries = _boundaries(world, sub.subscription_id)[1:]
    assert all(local(b, tz).endswith("-01 00:00") for b in boundaries)
    assert len(boundaries) == 10
    # Each period is a whole local month: 23-hour and 25-hour days included.
    offsets = {b.astimezone(zoneinfo.ZoneInfo(tz)).utcoffset() for b in boundaries}
    assert len(offsets) == 2


def test_first_calendar_period_in_a_dst_month_is_prorated_by_local_days(world: World) -> None:
    world.customer(timezone="Europe/Paris")
    world.advance(dt.datetime(2026, 3, 10, 8, tzinfo=dt.UTC))
    sub = world.subscribe(plan="basic", billing="calendar")
    rows = subscriptions.billing_points(
        world.db, tenant_id=world.tenant_id, subscription_id=sub.subscription_id
    )
    # March 10 to April 1 is 22 of March's 31 days, though March 29 has 23 hours: 31.00 × 22/31.
    assert [line["amount"] for line in rows[0].fee_lines] == ["22.00"]
