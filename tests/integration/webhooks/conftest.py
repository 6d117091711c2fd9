"""Fixtures: a receiver on loopback, a clock the tests move, a relay over the test database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from accrual.integrations.webhook_transport import HttpTransport
from accrual.services import customers, tenants, webhooks
from accrual.services.relay import Relay, RelaySettings
from accrual.services.tenants import CreatedTenant
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database
from tests.webhook_support import ManualClock, Receiver

ACTOR = Actor.system("tests")

__all__ = ["ACTOR", "ManualClock", "Receiver"]


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
