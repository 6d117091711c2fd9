"""Benchmark: usage ingestion through the HTTP batch API, against raw COPY of the same rows.

A real server (`accrual serve --workers N`, worker loop included) takes batches of 1,000
events from a load generator on this machine: keep-alive connections posting pre-built
bodies, so the generator costs as little as it can. Each event names a customer (the common
case), so ingestion attributes it to a subscription, claims its id for ever and stores it.
The baseline, in the same run, COPYs the same number of rows into the same two tables (ids
and events, with the same indexes) in transactions of one batch each, over as many
connections: what the disk and PostgreSQL can do with no HTTP, parsing or attribution.

Run: .venv/bin/python bench/ingest.py [--events 300000] [--batch 1000] [--connections 4] [--workers 2]
Uses ACCRUAL_BENCH_DATABASE_URL or ACCRUAL_DATABASE_URL (a server;
database `accrual_bench_ingest` is created there),
otherwise an embedded PostgreSQL under .accrual/bench-pgdata. Prints one line to compare:
`ingest events_per_s=... copy_rows_per_s=... ratio=... bytes_per_event=...`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import sqlalchemy as sa

from accrual.services import catalog, customers, subscriptions, tenants
from accrual.store import migrate
from accrual.store.database import Database
from support import ACTOR, bench_database, running_server

CATALOG = {
    "meters": [
        {"code": "api_calls", "aggregation": "count"},
        {"code": "tokens", "aggregation": "sum", "field": "tokens"},
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
USAGE_SIZE = (
    "select coalesce(sum(pg_total_relation_size(c.oid)), 0) from pg_class c "
    "where c.relname like 'usage_events_p%' or c.relname = 'usage_event_ids'"
)


def setup(db: Database, customers_n: int, now: dt.datetime) -> tuple[uuid.UUID, str]:
    migrate.upgrade(db)
    created = tenants.create_tenant(db, name="bench", timezone="UTC", actor=ACTOR, now=now)
    tid = created.tenant.tenant_id
    catalog.apply_catalog(db, tenant_id=tid, document=CATALOG, actor=ACTOR, now=now)
    start = now - dt.timedelta(days=1)
    for i in range(customers_n):
        customers.create_customer(
            db,
            tenant_id=tid,
            spec={"external_id": f"c{i}", "currency": "USD"},
            test_clock_id=None,
            actor=ACTOR,
            now=start,
        )
        subscriptions.create_subscription(
            db, tenant_id=tid, spec={"customer": f"c{i}", "plan": "api"}, actor=ACTOR, now=start
        )
    with db.connect() as conn:  # as autovacuum would have by the time a tenant sends volume
        conn.execute(sa.text("analyze"))
        conn.commit()
    return tid, created.admin_key.secret


def event(n: int, customers_n: int, ts: str) -> dict[str, object]:
    if n % 2:
        return {"id": f"e{n}", "meter": "api_calls", "customer": f"c{n % customers_n}", "timestamp": ts}
    return {
        "id": f"e{n}",
        "meter": "tokens",
        "customer": f"c{n % customers_n}",
        "timestamp": ts,
        "properties": {"tokens": 100 + n % 900, "model": "m1"},
    }


def bodies(total: int, batch: int, customers_n: int, first: int, ts: str) -> list[bytes]:
    return [
        json.dumps([event(n, customers_n, ts) for n in range(start, start + batch)]).encode()
        for start in range(first, first + total, batch)
    ]


def run_parallel(work: list[bytes], connections: int, send: Callable[[], Callable[[bytes], None]]) -> float:
    """Send every body over `connections` threads; return the elapsed seconds."""
    pending: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    for body in work:
        pending.put(body)
    for _ in range(connections):
        pending.put(None)
    errors: list[BaseException] = []

    def loop() -> None:
        sender = send()
        try:
            while (body := pending.get()) is not None:
                sender(body)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def http_sender(port: int, secret: str, batch: int) -> Callable[[], Callable[[bytes], None]]:
    expected = f'"accepted":{batch},'.encode()
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def make() -> Callable[[bytes], None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

        def send(body: bytes) -> None:
            conn.request("POST", "/v1/events", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200 or expected not in answer:
                raise RuntimeError(f"{response.status}: {answer[:300]!r}")

        return send

    return make


def copy_rows(
    body: bytes, tenant_id: uuid.UUID, subs: list[uuid.UUID], meters: dict[str, uuid.UUID]
) -> Iterator[tuple]:  # type: ignore[type-arg]
    now = dt.datetime.now(dt.UTC)
    for item in json.loads(body):
        n = int(item["id"][1:])
        ts = dt.datetime.fromisoformat(item["timestamp"])
        props = json.dumps(item.get("properties", {}))
        bucket = ts.replace(minute=0, second=0, microsecond=0)
        yield (tenant_id, subs[n % len(subs)], meters[item["meter"]], ts, bucket, item["id"], props, now)


def copy_sender(
    url: str, tenant_id: uuid.UUID, subs: list[uuid.UUID], meters: dict[str, uuid.UUID]
) -> Callable[[], Callable[[bytes], None]]:
    def make() -> Callable[[bytes], None]:
        conn = psycopg.connect(url)

        def send(body: bytes) -> None:
            rows = list(copy_rows(body, tenant_id, subs, meters))
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(
                    "COPY usage_event_ids (tenant_id, event_id, payload_hash, ts, received_at) FROM STDIN"
                ) as copy:
                    for row in rows:
                        copy.write_row((row[0], row[5], b"0123456789abcdef", row[3], row[7]))
                with cur.copy(
                    "COPY usage_events (tenant_id, subscription_id, meter_id, ts, bucket, event_id, "
                    "properties, received_at, late) FROM STDIN"
                ) as copy:
                    for row in rows:
                        copy.write_row((*row, False))

        return send

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--customers", type=int, default=500)
    args = parser.parse_args()
    total = args.events // args.batch * args.batch

    with bench_database("accrual_bench_ingest") as url:
        db = Database(url, pool_size=2)
        try:
            now = dt.datetime.now(dt.UTC)
            tid, secret = setup(db, args.customers, now)
            ts = (now - dt.timedelta(minutes=5)).isoformat()
            warmup = bodies(10 * args.batch, args.batch, args.customers, 10_000_000, ts)
            work = bodies(total, args.batch, args.customers, 0, ts)
            with running_server(url, workers=args.workers) as port:
                run_parallel(warmup, args.connections, http_sender(port, secret, args.batch))
                size_before = _scalar(db, USAGE_SIZE)
                api_s = run_parallel(work, args.connections, http_sender(port, secret, args.batch))
                size_after = _scalar(db, USAGE_SIZE)
            stored = _scalar(db, f"select count(*) from usage_events where tenant_id = '{tid}'")
            assert stored == total + len(warmup) * args.batch, f"stored {stored} events"

            # Baseline: the same rows by COPY for a second tenant, one transaction per batch.
            other = tenants.create_tenant(db, name="copy", timezone="UTC", actor=ACTOR, now=now).tenant
            with db.connect() as conn:
                subs = list(
                    conn.execute(
                        sa.text("select subscription_id from subscriptions where tenant_id = :t order by 1"),
                        {"t": tid},
                    ).scalars()
                )
                meters = dict(
                    conn.execute(
                        sa.text("select code, meter_id from meters where tenant_id = :t"), {"t": tid}
                    ).all()
                )
            raw = url.replace("postgresql+psycopg://", "postgresql://", 1)
            copy_s = run_parallel(work, args.workers, copy_sender(raw, other.tenant_id, subs, meters))
        finally:
            db.dispose()

    rate = total / api_s
    copy_rate = total / copy_s
    print(f"events: {total:,} in batches of {args.batch} over {args.connections} connections")
    print(f"  HTTP API ({args.workers} server processes): {api_s:.1f} s")
    print(f"  baseline COPY ({args.workers} connections): {copy_s:.1f} s")
    print(
        f"ingest events_per_s={rate:.0f} copy_rows_per_s={copy_rate:.0f} ratio={rate / copy_rate:.2f} "
        f"bytes_per_event={(size_after - size_before) / total:.0f}"
    )


def _scalar(db: Database, sql: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


if __name__ == "__main__":
    main()
