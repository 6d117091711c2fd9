"""Every aggregation, with filters and group-by, matches a brute-force oracle over random events,
however the events split between rollups, raw edges and the fresh tail."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accrual.domain import usage
from accrual.domain.periods import Period
from accrual.services import catalog
from accrual.services.catalog.common import MeterView
from accrual.services.unit_of_work import Actor
from accrual.services.usage import ingest, intake, maintenance, reads
from accrual.store import usage_rollups
from accrual.store.database import Database
from tests.support import metered_subscription

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
ACTOR = Actor.cli("oracle")

EVENT = st.fixed_dictionaries(
    {
        "minute": st.integers(0, 31 * 24 * 60 - 1),
        "second": st.integers(0, 59),
        "value": st.one_of(st.integers(-5, 50), st.decimals("-3", "40", places=3, allow_nan=False)),
        "region": st.sampled_from(["eu", "us", "ap"]),
        "plan": st.sampled_from(["a", "b"]),
        "user": st.sampled_from(["u1", "u2", "u3", "u4"]),
    }
)

METER = st.sampled_from(
    [
        {"aggregation": "count"},
        {"aggregation": "sum", "field": "value"},
        {"aggregation": "max", "field": "value"},
        {"aggregation": "latest", "field": "value"},
        {"aggregation": "unique_count", "field": "user"},
        {"aggregation": "weighted_sum", "field": "value"},
        {"aggregation": "sum", "field": "value", "filters": {"region": ["eu", "ap"]}},
        {"aggregation": "count", "group_by": ["plan"]},
        {"aggregation": "weighted_sum", "field": "value", "group_by": ["region"]},
        {"aggregation": "unique_count", "field": "user", "filters": {"plan": ["a"]}, "group_by": ["region"]},
    ]
)

counter = iter(range(10**9))


def roll_up_everything(db: Database, tid: Any) -> None:
    """Run rollup passes until every event of the tenant is folded. A pass folds only what
    transactions older than the oldest still running wrote, and other tests' transactions (in
    any database of the server) may be running, so one pass may not be enough."""
    deadline = time.monotonic() + 30
    while True:
        maintenance.roll_up(db, now=T0)
        with db.connect() as conn:
            left = conn.execute(
                sa.text(
                    "select count(*) from usage_events where tenant_id = :t and xact >= "
                    "(select xact_watermark from usage_rollup_state where tenant_id = :t)"
                ),
                {"t": tid},
            ).scalar_one()
        if not left:
            return
        assert time.monotonic() < deadline, f"{left} events still not rolled up"
        time.sleep(0.05)


def _world(db: Database, meter_spec: dict[str, Any], start: dt.datetime = T0) -> tuple[Any, Any, MeterView]:
    tid, sid = metered_subscription(
        db, meter={"code": "m", **meter_spec}, start=start, actor=ACTOR, name="oracle"
    )
    return tid, sid, catalog.get_meter(db, tenant_id=tid, code="m")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    meter_spec=METER,
    events=st.lists(EVENT, min_size=0, max_size=40),
    # Events up to the first cut are rolled up in one pass, those up to the second in another
    # (merging into the same buckets), the rest stay in the fresh tail.
    cuts=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    window=st.tuples(st.integers(0, 31 * 24 * 60), st.integers(0, 31 * 24 * 60)),
    # Where the subscription starts in the hour: its rollups are hours starting there.
    offset=st.sampled_from(
        [dt.timedelta(0), dt.timedelta(minutes=37, seconds=12.5), dt.timedelta(seconds=3599)]
    ),
)
def test_quantities_match_the_oracle(
    db: Database,
    meter_spec: dict[str, Any],
    events: list[dict[str, Any]],
    cuts: tuple[int, int],
    window: tuple[int, int],
    offset: dt.timedelta,
) -> None:
    start = T0 + offset
    tid, sid, meter = _world(db, meter_spec, start)
    raw = [
        {
            "id": f"o{next(counter)}",
            "subscription": "s",
            "meter": "m",
            "timestamp": (start + dt.timedelta(minutes=e["minute"], seconds=e["second"])).isoformat(),
            "properties": {"value": e["value"], "region": e["region"], "plan": e["plan"], "user": e["user"]},
        }
        for e in events
    ]
    first, second = sorted(cuts)
    for rolled, chunk in ((True, raw[:first]), (True, raw[first:second]), (False, raw[second:])):
        if chunk:
            ingest.ingest(db, tenant_id=tid, events=intake.parse_events(chunk, now=T0), now=T0)
        if rolled:
            roll_up_everything(db, tid)
    low, high = sorted(window)
    period = Period(start, start + dt.timedelta(days=31))
    win = Period(start + dt.timedelta(minutes=low), start + dt.timedelta(minutes=high, seconds=1))
    with db.snapshot() as conn:
        got = reads.window_quantities(
            conn, tenant_id=tid, subscription_id=sid, meter=meter, window=win, period=period, since=start
        )
    parsed = intake.parse_events(raw, now=T0) if raw else []
    expected = usage.aggregate_events(
        meter.definition,
        [(e.ts, e.event_id, e.properties) for e in parsed],
        window=win,
        period=period,
    )
    # A group with nothing to count may be absent on either side: absent means zero.
    for key in set(expected) | set(got):
        assert got.get(key, Fraction(0)) == expected.get(key, Fraction(0)), key


def test_weighted_sum_golden(db: Database) -> None:
    """20 GB from Mar 16 and +10 GB from Mar 17 in a 31-day March → 15.1612903226 GB·month."""
    tid, sid, meter = _world(db, {"aggregation": "weighted_sum", "field": "gb"})
    sent = [
        {
            "id": "s1",
            "subscription": "s",
            "meter": "m",
            "timestamp": "2026-03-16T00:00:00Z",
            "properties": {"gb": 20},
        },
        {
            "id": "s2",
            "subscription": "s",
            "meter": "m",
            "timestamp": "2026-03-17T00:00:00Z",
            "properties": {"gb": 10},
        },
    ]
    ingest.ingest(db, tenant_id=tid, events=intake.parse_events(sent, now=T0), now=T0)
    period = Period(T0, dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    with db.snapshot() as conn:
        got = reads.window_quantities(
            conn, tenant_id=tid, subscription_id=sid, meter=meter, window=period, period=period, since=T0
        )
    assert got == {"[]": Fraction(470, 31)}
    assert str(Decimal(470) / Decimal(31))[:13] == "15.1612903225"


def test_latest_breaks_timestamp_ties_by_event_id_code_points_in_every_path(db: Database) -> None:
    """ "tie-a" > "tie-Z" by code point (a linguistic collation says the opposite), whether the two
    events are raw, rolled up, or one of each."""
    period = Period(T0, dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    at = "2026-03-10T10:30:00Z"
    for split in (0, 1, 2):  # how many of the two are rolled up before the read
        tid, sid, meter = _world(db, {"aggregation": "latest", "field": "v"})
        sent = [
            {"id": "tie-a", "subscription": "s", "meter": "m", "timestamp": at, "properties": {"v": 2}},
            {"id": "tie-Z", "subscription": "s", "meter": "m", "timestamp": at, "properties": {"v": 1}},
        ]
        for rolled, chunk in ((True, sent[:split]), (False, sent[split:])):
            if chunk:
                ingest.ingest(db, tenant_id=tid, events=intake.parse_events(chunk, now=T0), now=T0)
            if rolled:
                roll_up_everything(db, tid)
        for window in (
            period,
            Period(T0 + dt.timedelta(days=9, hours=10), T0 + dt.timedelta(days=9, hours=11)),
        ):
            with db.snapshot() as conn:
                got = reads.window_quantities(
                    conn,
                    tenant_id=tid,
                    subscription_id=sid,
                    meter=meter,
                    window=window,
                    period=period,
                    since=T0,
                )
            assert got == {"[]": Fraction(2)}, (split, window)


def test_a_rollup_pass_leaves_no_page_unsummarized(db: Database) -> None:
    """Reads find the fresh tail through the BRIN index on xact; page ranges it has not summarized
    would match every read, so each rollup pass summarizes them (all but the last, partial one,
    which PostgreSQL leaves for later: 32 pages at most)."""
    tid, _, _ = _world(db, {"aggregation": "count"})
    sent = [
        {"id": f"b{i}", "subscription": "s", "meter": "m", "timestamp": "2026-03-02T00:00:00Z"}
        for i in range(3000)
    ]
    ingest.ingest(db, tenant_id=tid, events=intake.parse_events(sent, now=T0), now=T0)
    maintenance.roll_up(db, now=T0)
    with db.transaction() as conn:
        left = usage_rollups.summarize_new_pages(conn)  # what is left to summarize after the pass
    assert left == 0


def test_a_period_starting_mid_hour_is_read_from_whole_buckets(db: Database) -> None:
    """A subscription starting at 00:37:12.5 rolls its usage up in hours starting at :37:12.5, so
    its period's usage comes from buckets alone once rolled up: nothing at the edges is raw."""
    start = T0 + dt.timedelta(minutes=37, seconds=12.5)
    tid, sid, meter = _world(db, {"aggregation": "sum", "field": "v"}, start)
    sent = [
        {
            "id": f"g{i}",
            "subscription": "s",
            "meter": "m",
            "properties": {"v": i},
            "timestamp": (start + dt.timedelta(minutes=7 * i)).isoformat(),
        }
        for i in range(40)
    ]
    ingest.ingest(db, tenant_id=tid, events=intake.parse_events(sent, now=start), now=start)
    roll_up_everything(db, tid)
    with db.connect() as conn:
        buckets = (
            conn.execute(
                sa.text("select distinct bucket from usage_rollups where tenant_id = :t order by 1"),
                {"t": tid},
            )
            .scalars()
            .all()
        )
    assert buckets[0] == start
    assert all((b - start) % dt.timedelta(hours=1) == dt.timedelta(0) for b in buckets)
    period = Period(start, start + dt.timedelta(days=31))
    with db.snapshot() as conn:
        got = reads.window_quantities(
            conn, tenant_id=tid, subscription_id=sid, meter=meter, window=period, period=period, since=start
        )
    assert got == {"[]": Fraction(sum(range(40)))}


def test_changing_what_a_meter_counts_refolds_its_rollups(db: Database) -> None:
    """A meter no published plan version uses may change its rules; its rolled-up events are
    counted again under the new ones, as the raw ones are."""
    tid, sid, _ = _world(db, {"aggregation": "sum", "field": "v", "filters": {"region": ["eu"]}})
    catalog.apply_catalog(
        db,
        tenant_id=tid,
        document={
            "meters": [{"code": "other", "aggregation": "sum", "field": "v", "filters": {"region": ["eu"]}}]
        },
        actor=ACTOR,
        now=T0,
    )
    sent = [
        {
            "id": f"r{i}",
            "subscription": "s",
            "meter": "other",
            "timestamp": (T0 + dt.timedelta(hours=i)).isoformat(),
            "properties": {"v": i, "region": "eu" if i % 2 else "us"},
        }
        for i in range(30)
    ]
    ingest.ingest(db, tenant_id=tid, events=intake.parse_events(sent[:20], now=T0), now=T0)
    roll_up_everything(db, tid)
    ingest.ingest(db, tenant_id=tid, events=intake.parse_events(sent[20:], now=T0), now=T0)
    period = Period(T0, T0 + dt.timedelta(days=31))

    def quantity() -> dict[str, Fraction]:
        meter = catalog.get_meter(db, tenant_id=tid, code="other")
        with db.snapshot() as conn:
            return reads.window_quantities(
                conn, tenant_id=tid, subscription_id=sid, meter=meter, window=period, period=period, since=T0
            )

    assert quantity() == {"[]": Fraction(sum(i for i in range(30) if i % 2))}
    catalog.update_meter(
        db, tenant_id=tid, code="other", changes={"filters": {"region": ["us"]}}, actor=ACTOR, now=T0
    )
    assert quantity() == {"[]": Fraction(sum(i for i in range(30) if i % 2 == 0))}
