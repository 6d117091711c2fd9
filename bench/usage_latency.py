"""Benchmark: usage-to-visibility latency under sustained load, and current usage over 10M events.

The setup stores `--preload` events (10 million by default) for one subscription, spread over
the 20 days of its current period so far (which starts at an arbitrary instant, not on the
hour), straight into the events table by SQL (this is setup, not what is measured), and lets
a rollup pass fold them. Then a real server (`accrual serve --workers 2`, worker loop
included) takes a steady load (`--rate` events/s, 10,000 by default, in batches, from another
process) while this process measures, for `--seconds`:

- latency: a probe event is sent every 100 ms to its own subscription; from its 2xx to the
  first read of that subscription's current usage that counts it;
- current usage: reads of the preloaded subscription's current usage (two meters, one split
  by a property into three groups), while it keeps receiving events with the rest.

Baseline, in the same run: a bare SQL count of the preloaded subscription's events (what a
read without rollups would cost at least).

Run: .venv/bin/python bench/usage_latency.py [--preload 10000000] [--rate 10000] [--seconds 30]
Uses ACCRUAL_BENCH_DATABASE_URL or ACCRUAL_DATABASE_URL (a server; database
`accrual_bench_latency` is created there),
otherwise an embedded PostgreSQL under .accrual/bench-pgdata. Ends with one line to compare:
`usage_latency rate=... p50_ms=... p95_ms=... p99_ms=... current_usage_p99_ms=...` (current usage
read under the load, then `current_usage_quiet_...` read for 10 s after it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import statistics
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from accrual.services import catalog, customers, subscriptions, tenants
from accrual.services.usage import maintenance
from accrual.store import migrate
from accrual.store import usage as usage_store
from accrual.store.database import Database
from support import ACTOR, bench_database, running_server

CATALOG = {
    "meters": [
        {"code": "api_calls", "aggregation": "count"},
        {"code": "tokens", "aggregation": "sum", "field": "tokens", "group_by": ["model"]},
    ],
    "plans": [
        {
            "code": "api",
            "currency": "USD",
            "interval": "month",
            "charges": [
                {"code": "calls", "meter": "api_calls", "model": "per_unit", "amount": "0.001"},
                {"code": "tokens", "meter": "tokens", "model": "per_unit", "amount": "0.00002"},
            ],
        }
    ],
}
BIG = 1  # preloaded subscriptions
LOAD = 200  # further subscriptions that only take the steady load
BATCH = 500

# Events spread evenly over [start, end) of the period so far, for the BIG subscriptions,
# alternating meters, in the buckets of their grid (they start at `start`); one transaction per
# chunk, as ingestion would commit them.
PRELOAD = """
INSERT INTO usage_events
       (tenant_id, subscription_id, meter_id, ts, bucket, event_id, properties, received_at, late)
SELECT :t, (:subs)[1 + n % :nsubs],
       CASE WHEN (n / :nsubs) % 2 = 0 THEN cast(:calls as uuid) ELSE cast(:tokens as uuid) END,
       ts, date_bin('1 hour', ts, cast(:start as timestamptz)),
       'p' || n,
       CASE WHEN (n / :nsubs) % 2 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('tokens', 1 + n % 1000, 'model', 'm' || (n % 3)) END,
       cast(:start as timestamptz), false
  FROM generate_series(cast(:lo as bigint), cast(:hi as bigint) - 1) AS n,
       LATERAL (SELECT cast(:start as timestamptz)
                       + (n * cast(:step as double precision)) * interval '1 microsecond' AS ts) AS t
"""


def setup(db: Database, now: dt.datetime, preload: int) -> tuple[uuid.UUID, str, list[uuid.UUID], uuid.UUID]:
    migrate.upgrade(db)
    created = tenants.create_tenant(db, name="bench", timezone="UTC", actor=ACTOR, now=now)
    tid = created.tenant.tenant_id
    catalog.apply_catalog(db, tenant_id=tid, document=CATALOG, actor=ACTOR, now=now)
    start = now - dt.timedelta(days=20)
    ids = []
    for i in range(BIG + LOAD + 1):
        customers.create_customer(
            db,
            tenant_id=tid,
            spec={"external_id": f"c{i}", "currency": "USD"},
            test_clock_id=None,
            actor=ACTOR,
            now=start,
        )
        view = subscriptions.create_subscription(
            db, tenant_id=tid, spec={"customer": f"c{i}", "plan": "api"}, actor=ACTOR, now=start
        )
        ids.append(view.subscription_id)
    big, probe = ids[:BIG], ids[-1]

    with db.connect() as conn:
        meters = dict(
            conn.execute(sa.text("select code, meter_id from meters where tenant_id = :t"), {"t": tid}).all()
        )
    end = now - dt.timedelta(minutes=1)
    usage_store.ensure_partitions(db, [start, end])
    step = (end - start) / dt.timedelta(microseconds=1) / max(preload, 1)
    started = time.perf_counter()
    chunk = 500_000
    for lo in range(0, preload, chunk):
        with db.transaction() as conn:
            conn.execute(
                sa.text(PRELOAD),
                {
                    "t": tid,
                    "subs": big,
                    "nsubs": BIG,
                    "calls": meters["api_calls"],
                    "tokens": meters["tokens"],
                    "start": start,
                    "step": step,
                    "lo": lo,
                    "hi": min(lo + chunk, preload),
                },
            )
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    with db.connect() as conn:
        conn.execute(sa.text("analyze"))  # as autovacuum would have by then
        conn.commit()
    while maintenance.roll_up(db, now=now):
        pass
    rollup_s = time.perf_counter() - started
    print(f"preload: {preload:,} events in {load_s:.1f} s; rollup pass {rollup_s:.1f} s", flush=True)
    return tid, created.admin_key.secret, big, probe


def load(port: int, secret: str, rate: int, seconds: float, elapsed: Any, *, prefix: str = "l") -> None:
    """The steady load, run in its own process: batches to the BIG and LOAD customers, paced."""
    ts = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)).isoformat()
    batches = int(rate * seconds) // BATCH
    bodies = [
        json.dumps(
            [
                {
                    "id": f"{prefix}{b}_{i}",
                    "meter": "tokens" if i % 2 else "api_calls",
                    "customer": f"c{(b * BATCH + i) % (BIG + LOAD)}",
                    "timestamp": ts,
                    "properties": {"tokens": 10, "model": f"m{i % 3}"} if i % 2 else {},
                }
                for i in range(BATCH)
            ]
        ).encode()
        for b in range(batches)
    ]
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    interval = BATCH / rate
    lock = threading.Lock()
    position = [0]
    begin = time.monotonic()

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                n = position[0]
                position[0] += 1
            if n >= len(bodies):
                return
            delay = begin + n * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.request("POST", "/v1/events", body=bodies[n], headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise SystemExit(f"load: {response.status} {answer[:200]!r}")

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed.value = time.monotonic() - begin


class Client:
    def __init__(self, port: int, secret: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: object = None) -> dict:  # type: ignore[type-arg]
        self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
        response = self.conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise SystemExit(f"{method} {path}: {response.status} {answer[:200]!r}")
        return json.loads(answer)  # type: ignore[no-any-return]


def probe_latencies(port: int, secret: str, probe: uuid.UUID, until: float) -> list[float]:
    client = Client(port, secret)
    latencies = []
    sent = 0
    while time.monotonic() < until:
        tick = time.monotonic()
        client.call(
            "POST", "/v1/events", {"id": f"probe{sent}", "meter": "api_calls", "customer": f"c{BIG + LOAD}"}
        )
        acked = time.perf_counter()
        sent += 1
        while True:
            usage = client.call("GET", f"/v1/subscriptions/{probe}/usage")
            calls = next(c for c in usage["charges"] if c["meter"] == "api_calls")
            if Decimal(calls["quantity"]) >= sent:
                latencies.append(time.perf_counter() - acked)
                break
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    return latencies


def read_durations(port: int, secret: str, big: list[uuid.UUID], until: float) -> list[float]:
    client = Client(port, secret)
    durations = []
    n = 0
    while time.monotonic() < until:
        started = time.perf_counter()
        client.call("GET", f"/v1/subscriptions/{big[n % len(big)]}/usage")
        durations.append(time.perf_counter() - started)
        n += 1
        time.sleep(0.02)
    return durations


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preload", type=int, default=10_000_000)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()

    with bench_database("accrual_bench_latency") as url:
        db = Database(url, pool_size=2)
        try:
            now = dt.datetime.now(dt.UTC)
            tid, secret, big, probe = setup(db, now, args.preload)

            # Baseline: a bare count of the preloaded subscription's events, without rollups.
            with db.connect() as conn:
                started = time.perf_counter()
                conn.execute(
                    sa.text(
                        "select count(*) from usage_events where tenant_id = :t and subscription_id = :s"
                    ),
                    {"t": tid, "s": big[0]},
                ).scalar_one()
                scan_ms = (time.perf_counter() - started) * 1000

            with running_server(url, workers=2) as port:
                context = multiprocessing.get_context("spawn")
                elapsed = context.Value("d", 0.0)
                generator = context.Process(
                    target=load, args=(port, secret, args.rate, args.seconds, elapsed)
                )
                generator.start()
                time.sleep(1)  # let the load settle
                until = time.monotonic() + args.seconds - 2
                reads: list[float] = []
                reader = threading.Thread(
                    target=lambda: reads.extend(read_durations(port, secret, big, until))
                )
                reader.start()
                latencies = probe_latencies(port, secret, probe, until)
                reader.join()
                generator.join()
                if generator.exitcode != 0:
                    raise SystemExit("the load generator failed")
                # The same reads once the load has stopped (the rollup worker still folding its tail).
                quiet = read_durations(port, secret, big, time.monotonic() + 10)
            with db.connect() as conn:
                stored = conn.execute(
                    sa.text("select count(*) from usage_events where tenant_id = :t and event_id like 'l%'"),
                    {"t": tid},
                ).scalar_one()
        finally:
            db.dispose()

    rate = stored / elapsed.value
    print(
        f"load: {stored:,} events stored in {elapsed.value:.1f} s; "
        f"{len(latencies)} probes; {len(reads)} current-usage reads"
    )
    print(f"baseline: bare count of the subscription's {args.preload // BIG:,} events: {scan_ms:.0f} ms")
    print(
        f"usage_latency rate={rate:.0f} p50_ms={percentile(latencies, 50):.1f} "
        f"p95_ms={percentile(latencies, 95):.1f} p99_ms={percentile(latencies, 99):.1f} "
        f"current_usage_p50_ms={statistics.median(reads) * 1000:.1f} "
        f"current_usage_p99_ms={percentile(reads, 99):.1f} "
        f"current_usage_quiet_p50_ms={statistics.median(quiet) * 1000:.1f} "
        f"current_usage_quiet_p99_ms={percentile(quiet, 99):.1f}"
    )


if __name__ == "__main__":
    main()
