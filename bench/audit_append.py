"""Benchmark: the cost of a unit of work's audit record and outbox event.

Every state change writes one audit row (hash-chained under a per-tenant lock) and one
outbox row in its transaction. This measures committed units of work per second, one writer
and four concurrent writers (on one tenant, where the chain lock serializes them, and on four
tenants), against a baseline measured in the same run: the same two rows inserted by plain
INSERTs into tables without triggers, locks or hashing.

Run: .venv/bin/python bench/audit_append.py [--n 2000]
Uses ACCRUAL_BENCH_DATABASE_URL or ACCRUAL_DATABASE_URL (a server;
a database `accrual_bench` is created there),
otherwise an embedded PostgreSQL under .accrual/bench-pgdata.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import threading
import time
import uuid
from collections.abc import Callable

import sqlalchemy as sa

from accrual.services import tenants
from accrual.services.unit_of_work import Actor, unit_of_work
from accrual.store import migrate
from accrual.store.database import Database
from support import bench_database

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def rate(n: int, work: Callable[[int], None], threads: int = 1) -> float:
    per_thread = n // threads
    started = time.perf_counter()
    workers = [
        threading.Thread(target=lambda t=t: [work(t) for _ in range(per_thread)]) for t in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per_thread * threads / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="units of work per measurement")
    args = parser.parse_args()

    stack = contextlib.ExitStack()
    db = Database(stack.enter_context(bench_database("accrual_bench")), pool_size=8)
    try:
        migrate.upgrade(db)
        with db.transaction() as conn:
            conn.execute(sa.text("create table baseline_audit (like audit_log including defaults)"))
            conn.execute(sa.text("create table baseline_outbox (like outbox_events)"))
        ids = [
            tenants.create_tenant(
                db, name=f"bench {i}", timezone="UTC", actor=Actor.system("bench"), now=NOW
            ).tenant.tenant_id
            for i in range(4)
        ]
        counter = iter(range(10**9))

        def baseline(t: int) -> None:
            seq = next(counter)
            digest = hashlib.sha256(str(seq).encode()).digest()
            with db.transaction() as conn:
                conn.execute(
                    sa.text(
                        "insert into baseline_audit (tenant_id, seq, occurred_at, actor, action, "
                        "entity_type, entity_id, before, after, prev_hash, hash) values (:t, :s, :o, "
                        "'bench', 'thing.changed', 'thing', :e, null, cast(:a as jsonb), :h, :h)"
                    ),
                    {"t": ids[0], "s": seq, "o": NOW, "e": str(seq), "a": '{"n": 1}', "h": digest},
                )
                conn.execute(
                    sa.text(
                        "insert into baseline_outbox (tenant_id, event_id, seq, event_type, entity_type, "
                        "entity_id, payload, occurred_at, xid) values (:t, :i, :s, 'thing.changed', "
                        "'thing', :e, cast(:a as jsonb), :o, pg_current_xact_id())"
                    ),
                    {"t": ids[0], "i": uuid.uuid4(), "s": seq, "e": str(seq), "a": '{"n": 1}', "o": NOW},
                )

        def change(tenant_index: int) -> None:
            actor = Actor.system("bench")
            with unit_of_work(db, tenant_id=ids[tenant_index], actor=actor, now=NOW) as uow:
                uow.changed("thing.changed", entity_type="thing", entity_id="x", before=None, after={"n": 1})

        rate(200, change)  # warm up connections and caches
        rate(200, baseline)
        base = rate(args.n, baseline)
        single = rate(args.n, change)
        same_tenant = rate(args.n, lambda _t: change(0), threads=4)
        four_tenants = rate(args.n, change, threads=4)
        print(
            f"audit_append n={args.n} baseline_tx_per_s={base:.0f} uow_tx_per_s={single:.0f} "
            f"uow_vs_baseline={single / base:.2f} uow_4_threads_one_tenant_per_s={same_tenant:.0f} "
            f"uow_4_threads_four_tenants_per_s={four_tenants:.0f}"
        )
    finally:
        db.dispose()
        stack.close()


if __name__ == "__main__":
    main()
