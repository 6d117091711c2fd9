"""`accrual consume nats` against the real JetStream server: acknowledged only after commit, so a
crash between the two redelivers messages that count once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from accrual.services.unit_of_work import Actor
from accrual.store.database import Database
from tests.support import metered_subscription

pytestmark = pytest.mark.slow

NATS_URL = os.environ.get("ACCRUAL_TEST_NATS_URL", "nats://127.0.0.1:4222")
ACCRUAL = str(Path(sys.executable).parent / "accrual")
T0 = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
ACTOR = Actor.cli("nats")


def _nats_available() -> bool:
    import nats

    async def probe() -> bool:
        try:
            nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
        except Exception:
            return False
        try:
            await nc.jetstream().account_info()
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    return asyncio.run(probe())


async def _publish(subject: str, payloads: list[bytes]) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    for payload in payloads:
        await js.publish(subject, payload)
    await nc.close()


async def _setup_stream(stream: str, subjects: list[str]) -> None:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(NATS_URL)
    await nc.jetstream().add_stream(StreamConfig(name=stream, subjects=subjects))
    await nc.close()


async def _drop_stream(stream: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    await nc.jetstream().delete_stream(stream)
    await nc.close()


async def _dead_letters(stream: str) -> list[Any]:
    """Everything the dead-letter stream holds."""
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        sub = await nc.jetstream().pull_subscribe("", durable=None, stream=stream)
        try:
            return list(await sub.fetch(10, timeout=2))
        except nats.errors.TimeoutError:
            return []
    finally:
        await nc.close()


def _counted(db: Database, tenant_id: Any) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                sa.text("select count(*) from usage_events where tenant_id = :t"), {"t": tenant_id}
            ).scalar_one()
        )


# CI sets ACCRUAL_TEST_REQUIRE_SERVICES: there, a missing NATS server is a failure, not a skip.
@pytest.mark.skipif(
    not os.environ.get("ACCRUAL_TEST_REQUIRE_SERVICES") and not _nats_available(),
    reason="no NATS JetStream server at ACCRUAL_TEST_NATS_URL",
)
def test_a_crash_between_commit_and_ack_counts_every_event_once(db: Database, database_url: str) -> None:
    tid, _ = metered_subscription(
        db, meter={"code": "calls", "aggregation": "count"}, start=T0, actor=ACTOR, name="nats"
    )
    run = uuid.uuid4().hex[:12]
    stream, prefix, dead = f"T{run}", f"accrual.test.{run}.", f"accrual.test.{run}-dead"
    asyncio.run(_setup_stream(stream, [f"{prefix}>"]))
    asyncio.run(_setup_stream(f"{stream}D", [dead]))  # dead letters are kept, not just broadcast
    try:
        events = [
            json.dumps(
                {"id": f"n{i}", "subscription": "s", "meter": "calls", "timestamp": "2026-07-02T00:00:00Z"}
            ).encode()
            for i in range(50)
        ]
        # One message among them is not an event at all.
        asyncio.run(_publish(f"{prefix}{tid}", [*events[:10], b'{"id": "broken"', *events[10:]]))
        env = dict(os.environ, ACCRUAL_DATABASE_URL=database_url)
        args = [
            ACCRUAL,
            "consume",
            "nats",
            "--url",
            NATS_URL,
            "--stream",
            stream,
            "--subject-prefix",
            prefix,
            "--durable",
            f"d{run}",
            "--ack-wait",
            "2",
            "--batch",
            "20",
            "--dead-letter-subject",
            dead,
        ]

        crashed = subprocess.run(
            args,
            env=env | {"ACCRUAL_TEST_CRASH_AFTER_COMMIT": "1"},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert crashed.returncode == 17, crashed.stderr.decode()[-3000:]
        assert _counted(db, tid) == 19  # committed, never acknowledged (one of the 20 was not an event)

        consumer = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while _counted(db, tid) < 50 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(3)  # past ack_wait: the 20 redelivered ones must not count again
        finally:
            consumer.send_signal(signal.SIGINT)
            output, _ = consumer.communicate(timeout=30)
        assert consumer.returncode == 0, output.decode()[-3000:]
        assert _counted(db, tid) == 50
        with db.connect() as conn:
            ids = conn.execute(
                sa.text("select count(*) from usage_event_ids where tenant_id = :t"), {"t": tid}
            ).scalar_one()
        assert ids == 50
        # The malformed message went to the dead letters (once per delivery: the crash redelivered it).
        letters = asyncio.run(_dead_letters(f"{stream}D"))
        assert letters
        assert all(m.data == b'{"id": "broken"' for m in letters)
        assert "not JSON" in letters[0].headers["Accrual-Error"]
    finally:
        asyncio.run(_drop_stream(stream))
        asyncio.run(_drop_stream(f"{stream}D"))
