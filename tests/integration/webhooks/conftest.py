"""A real HTTP receiver on loopback, a clock the tests move, and a relay over the test database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from accrual.integrations.webhook_transport import HttpTransport
from accrual.services import customers, tenants, webhooks
from accrual.services.relay import Relay, RelaySettings
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database

ACTOR = Actor.system("tests")


class ManualClock:
    """Starts at the real time (receivers check webhook timestamps against it) and moves on demand."""

    def __init__(self) -> None:
        self.instant = dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        return self.instant

    def advance(self, delta: dt.timedelta) -> None:
        self.instant += delta


@dataclasses.dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    def verify(self, secret: str) -> Any:
        """The body, if the signature is valid for `secret` (raises otherwise)."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers as told."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        # Answers in order; once used up, 204.
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                    status, headers, reply = receiver.script.pop(0) if receiver.script else (204, {}, b"")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, *answers: int | tuple[int, dict[str, str], bytes]) -> None:
        with self._lock:
            self.script.extend(a if isinstance(a, tuple) else (a, {}, b"") for a in answers)

    def of_type(self, prefix: str) -> list[Received]:
        return [r for r in self.received if r.json()["type"].startswith(prefix)]

    def types(self) -> list[str]:
        return [r.json()["type"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def hooks_tenant(db: Database, clock: ManualClock) -> Iterator[CreatedTenant]:
    """A tenant allowed to send webhooks to loopback; its endpoints are disabled afterwards so
    later tests' relays do not keep retrying them."""
    created = tenants.create_tenant(db, name="Hooks", timezone="UTC", actor=ACTOR, now=clock.now())
    tenants.update_tenant(
        db,
        tenant_id=created.tenant.tenant_id,
        webhooks={"allow_insecure": True},
        actor=ACTOR,
        now=clock.now(),
    )
    yield created
    page = webhooks.list_endpoints(db, tenant_id=created.tenant.tenant_id, cursor=None, limit=100)
    for endpoint in page.items:
        webhooks.set_enabled(
            db,
            tenant_id=created.tenant.tenant_id,
            endpoint_id=endpoint.endpoint_id,
            enabled=False,
            actor=ACTOR,
            now=clock.now(),
        )


@pytest.fixture
def relay(db: Database, clock: ManualClock) -> Iterator[Relay]:
    transport = HttpTransport()
    instance = Relay(db, clock=clock, transport=transport, settings=RelaySettings(timeout=5.0, concurrency=4))
    yield instance
    instance.close()
    transport.close()


@pytest.fixture
def endpoint(
    db: Database, hooks_tenant: CreatedTenant, receiver: Receiver, clock: ManualClock
) -> webhooks.CreatedEndpoint:
    return webhooks.create_endpoint(
        db, tenant_id=hooks_tenant.tenant.tenant_id, url=receiver.url, actor=ACTOR, now=clock.now()
    )


@pytest.fixture
def make_customer(db: Database, hooks_tenant: CreatedTenant, clock: ManualClock) -> Callable[..., uuid.UUID]:
    def make(external_id: str | None = None) -> uuid.UUID:
        view = customers.create_customer(
            db,
            tenant_id=hooks_tenant.tenant.tenant_id,
            spec={"external_id": external_id or f"c-{uuid.uuid4().hex[:8]}", "currency": "USD"},
            test_clock_id=None,
            actor=ACTOR,
            now=clock.now(),
        )
        return view.customer_id

    return make


@pytest.fixture
def rename(db: Database, hooks_tenant: CreatedTenant, clock: ManualClock) -> Callable[[uuid.UUID, str], None]:
    def change(customer_id: uuid.UUID, name: str) -> None:
        customers.update_customer(
            db,
            tenant_id=hooks_tenant.tenant.tenant_id,
            customer_id=customer_id,
            changes={"name": name},
            actor=ACTOR,
            now=clock.now(),
        )

    return change
