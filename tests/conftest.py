"""Test fixtures: a real PostgreSQL database per xdist worker, built by the migrations.

With ACCRUAL_TEST_DATABASE_URL set (CI: the machine's PostgreSQL service), each worker
creates its own database on that server. Without it, the controlling process starts an
embedded PostgreSQL under .accrual/test-pgdata and hands its URL to the workers.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from accrual.api.app import create_app
from accrual.services import tenants
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store import migrate
from accrual.store.database import Database
from accrual.store.embedded import EmbeddedPostgres, create_database
from tests.webhook_support import Receiver

ROOT = Path(__file__).resolve().parent.parent
URL_VARIABLE = "ACCRUAL_TEST_DATABASE_URL"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

_embedded: EmbeddedPostgres | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _embedded  # noqa: PLW0603 - one embedded server for the whole run
    is_worker = hasattr(config, "workerinput")
    if not is_worker and not os.environ.get(URL_VARIABLE):
        _embedded = EmbeddedPostgres(ROOT / ".accrual" / "test-pgdata")
        os.environ[URL_VARIABLE] = _embedded.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _embedded is not None:
        _embedded.stop()


@pytest.fixture(scope="session")
def server_url() -> str:
    url = os.environ.get(URL_VARIABLE)
    assert url, f"{URL_VARIABLE} is not set"
    return url


@pytest.fixture(scope="session")
def database_url(server_url: str, worker_id: str) -> str:
    """A fresh database for this worker, migrated to head."""
    name = f"accrual_test_{worker_id}"
    url = create_database(server_url, name, drop_existing=True)
    db = Database(url, pool_size=2)
    migrate.upgrade(db)
    db.dispose()
    return url


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, pool_size=12)
    yield database
    database.dispose()


@pytest.fixture
def tenant(db: Database) -> CreatedTenant:
    """A new tenant with its admin key: tests isolate themselves by tenant, never by truncating."""
    return tenants.create_tenant(db, name="Acme Test", timezone="UTC", actor=Actor.system("tests"), now=NOW)


@pytest.fixture
def other_tenant(db: Database) -> CreatedTenant:
    return tenants.create_tenant(
        db, name="Other Co", timezone="Europe/Paris", actor=Actor.system("tests"), now=NOW
    )


@pytest.fixture(scope="session")
def client(db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(db), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server on loopback that records webhooks (see tests.webhook_support)."""
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_server(db: Database) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, for tests that need real concurrency."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
