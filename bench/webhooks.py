"""Benchmark: webhook deliveries per second, and the lag from commit to delivery.

A receiver runs in its own process (a threaded HTTP/1.1 server on loopback that answers 204
and notes when each `webhook-id` arrived). One tenant has one endpoint there. Events go into
the outbox the way services write them (`store.outbox.append` in a transaction), for
`--entities` entities in turn, so ordering per entity is in play.

1. Throughput: with the relays running (`--relays` processes, each `accrual relay`, as
   production runs them, warmed up by one event), `--backlog` events are committed in one
   transaction; deliveries/s is the backlog over the time from that commit's start to the
   last arrival.
2. Lag: with the relays running, events are committed at `--rate` per second for
   `--seconds`, in transactions of 10; the lag of an event is from its commit returning to its
   arrival at the receiver.

Baseline, in the same run: the same number of signed requests sent straight to the receiver
at the same concurrency, with no database (what HTTP alone costs here).

Run: .venv/bin/python bench/webhooks.py [--backlog 20000] [--rate 500] [--seconds 20] [--relays 2]
Uses ACCRUAL_BENCH_DATABASE_URL or ACCRUAL_DATABASE_URL (a server; database
`accrual_bench_webhooks` is created there), otherwise an embedded PostgreSQL under
.accrual/bench-pgdata. Ends with one line to compare:
`webhooks deliveries_per_s=… lag_p50_ms=… lag_p99_ms=… baseline_requests_per_s=… ratio=…`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import multiprocessing
import os
import statistics
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

from accrual.domain.webhooks import AddressPolicy
from accrual.integrations.webhook_transport import HttpTransport, Outgoing
from accrual.services import tenants, webhooks
from accrual.services.relay import sign
from accrual.store import migrate, outbox
from accrual.store.database import Database, dumps_json
from support import ACCRUAL, ACTOR, bench_database, free_port

CONCURRENCY = 16


def _receive(port: int, pipe: Connection) -> None:
    """The receiver process: answer 204, note arrivals; on request, hand them over."""
    arrivals: dict[str, float] = {}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            now = time.time()
            with lock:
                arrivals.setdefault(self.headers["webhook-id"], now)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pipe.send("ready")
    while True:
        message = pipe.recv()
        if message == "stop":
            return
        with lock:
            pipe.send(dict(arrivals))
            if message == "reset":
                arrivals.clear()


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self._pipe, child = multiprocessing.Pipe()
        self._process = multiprocessing.Process(target=_receive, args=(self.port, child), daemon=True)
        self._process.start()
        assert self._pipe.recv() == "ready"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def arrivals(self, *, reset: bool = False) -> dict[str, float]:
        self._pipe.send("reset" if reset else "get")
        found: dict[str, float] = self._pipe.recv()
        return found

    def stop(self) -> None:
        self._pipe.send("stop")
        self._process.join(5)


def _commit_events(db: Database, tenant_id: uuid.UUID, count: int, entities: int, start: int) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    events = [
        outbox.PendingEvent(
            event_id=uuid.uuid4(),
            event_type="customer.updated",
            entity_type="customer",
            entity_id=f"bench-{(start + i) % entities}",
            payload={
                "id": f"bench-{(start + i) % entities}",
                "name": f"Customer {start + i}",
                "n": start + i,
            },
            occurred_at=now,
        )
        for i in range(count)
    ]
    with db.transaction() as conn:
        outbox.append(conn, tenant_id=tenant_id, events=events)
    return [str(e.event_id) for e in events]


def _wait_for(receiver: Receiver, ids: list[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        arrivals = receiver.arrivals()
        if all(i in arrivals for i in ids) or time.monotonic() > deadline:
            return arrivals
        time.sleep(0.05)


def _baseline(receiver: Receiver, count: int) -> float:
    """Signed POSTs straight to the receiver at the relay's concurrency, no database."""
    transport = HttpTransport()
    policy = AddressPolicy(allow_insecure=True)
    secret = webhooks.new_secret()
    at = dt.datetime.now(dt.UTC)

    def post(i: int) -> None:
        body = dumps_json(
            {"type": "customer.updated", "timestamp": at.isoformat(), "data": {"n": i}}
        ).encode()
        msg_id = f"baseline-{i}"
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": sign(secrets=[secret], msg_id=msg_id, timestamp=at, body=body),
        }
        reply = transport.send(Outgoing(receiver.url, headers, body, 15.0, policy))
        assert reply.succeeded, reply

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(post, range(count)))
    elapsed = time.perf_counter() - started
    transport.close()
    return count / elapsed


def _relays(url: str, count: int) -> list[subprocess.Popen[bytes]]:
    env = os.environ | {
        "ACCRUAL_DATABASE_URL": url,
        "ACCRUAL_LOG_LEVEL": "warning",
        "ACCRUAL_RELAY_CONCURRENCY": str(CONCURRENCY),
    }
    return [
        subprocess.Popen([ACCRUAL, "relay"], env=env, stdout=subprocess.DEVNULL)  # noqa: S603 - our own
        for _ in range(count)
    ]


def _measure(
    url: str, db: Database, tenant: uuid.UUID, receiver: Receiver, args: argparse.Namespace
) -> tuple[float, list[float]]:
    """Deliveries/s of a backlog, then the lags (ms, sorted) at a steady rate."""
    relays = _relays(url, args.relays)
    try:
        # Warm up: the relays are running once this event has arrived.
        warm = _commit_events(db, tenant, 1, args.entities, -1)
        if warm[0] not in _wait_for(receiver, warm, timeout=120):
            raise SystemExit("the relays did not start")
        receiver.arrivals(reset=True)
        started = time.time()
        backlog = _commit_events(db, tenant, args.backlog, args.entities, 0)
        arrivals = _wait_for(receiver, backlog, timeout=600)
        missing = [i for i in backlog if i not in arrivals]
        if missing:
            raise SystemExit(f"{len(missing)} of {len(backlog)} events were not delivered")
        throughput = len(backlog) / (max(arrivals[i] for i in backlog) - started)
        print(f"throughput: {len(backlog)} deliveries in {len(backlog) / throughput:.1f} s", flush=True)

        receiver.arrivals(reset=True)
        committed: dict[str, float] = {}
        interval = 10 / args.rate
        next_at = time.monotonic()
        sent = 0
        while sent < args.rate * args.seconds:
            ids = _commit_events(db, tenant, 10, args.entities, args.backlog + sent)
            at = time.time()
            committed.update((i, at) for i in ids)
            sent += 10
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        arrivals = _wait_for(receiver, list(committed), timeout=120)
    finally:
        for relay in relays:
            relay.terminate()
        for relay in relays:
            relay.wait(30)
    missing = [i for i in committed if i not in arrivals]
    if missing:
        raise SystemExit(f"{len(missing)} of {len(committed)} events were not delivered at {args.rate}/s")
    return throughput, sorted((arrivals[i] - committed[i]) * 1000 for i in committed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--entities", type=int, default=1_000)
    parser.add_argument("--relays", type=int, default=2)
    args = parser.parse_args()

    receiver = Receiver()
    with bench_database("accrual_bench_webhooks") as url:
        db = Database(url, pool_size=4)
        migrate.upgrade(db)
        now = dt.datetime.now(dt.UTC)
        tenant = tenants.create_tenant(
            db, name="Bench", timezone="UTC", actor=ACTOR, now=now
        ).tenant.tenant_id
        tenants.update_tenant(db, tenant_id=tenant, webhooks={"allow_insecure": True}, actor=ACTOR, now=now)
        webhooks.create_endpoint(db, tenant_id=tenant, url=receiver.url, actor=ACTOR, now=now)

        baseline = _baseline(receiver, min(args.backlog, 10_000))
        receiver.arrivals(reset=True)

        throughput, lags = _measure(url, db, tenant, receiver, args)
        receiver.stop()
        db.dispose()

    p50 = statistics.median(lags)
    p99 = lags[int(len(lags) * 0.99) - 1]
    print(
        f"lag at {args.rate} events/s for {args.seconds} s: p50 {p50:.1f} ms, "
        f"p95 {lags[int(len(lags) * 0.95) - 1]:.1f} ms, p99 {p99:.1f} ms, max {lags[-1]:.1f} ms"
    )
    print(f"baseline: {baseline:.0f} signed requests/s straight to the receiver at concurrency {CONCURRENCY}")
    print(
        f"webhooks deliveries_per_s={throughput:.0f} lag_p50_ms={p50:.1f} lag_p99_ms={p99:.1f} "
        f"baseline_requests_per_s={baseline:.0f} ratio={throughput / baseline:.2f}"
    )


if __name__ == "__main__":
    main()
