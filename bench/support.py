"""What the benchmarks share: a fresh database, a real server, the actor they act as.

Each benchmark runs as a script (`python bench/<name>.py`), so this module is importable as
`support` from them.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from accrual.services.unit_of_work import Actor
from accrual.store.embedded import EmbeddedPostgres, create_database

ROOT = Path(__file__).resolve().parent.parent
ACCRUAL = str(Path(sys.executable).parent / "accrual")
ACTOR = Actor.system("bench")


@contextlib.contextmanager
def bench_database(name: str) -> Iterator[str]:
    """A new, empty database `name`: on the server ACCRUAL_BENCH_DATABASE_URL (or else
    ACCRUAL_DATABASE_URL) names, or on an embedded PostgreSQL under .accrual/bench-pgdata
    (started here, stopped after)."""
    server = os.environ.get("ACCRUAL_BENCH_DATABASE_URL") or os.environ.get("ACCRUAL_DATABASE_URL")
    embedded = None
    if server is None:
        embedded = EmbeddedPostgres(ROOT / ".accrual" / "bench-pgdata")
        server = embedded.start()
    try:
        yield create_database(server, name, drop_existing=True)
    finally:
        if embedded is not None:
            embedded.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(url: str, *, workers: int) -> Iterator[int]:
    """`accrual serve --workers N` over the database at `url`, worker loop included; yields its port."""
    port = free_port()
    env = os.environ | {"ACCRUAL_DATABASE_URL": url, "ACCRUAL_LOG_LEVEL": "warning"}
    process = subprocess.Popen(  # noqa: S603 - our own executable
        [ACCRUAL, "serve", "--port", str(port), "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not _ready(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=60)


def _ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
