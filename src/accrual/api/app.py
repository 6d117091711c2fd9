"""The ASGI application."""

from __future__ import annotations

from fastapi import FastAPI

import accrual
from accrual.api import problems
from accrual.api.deps import AppServices
from accrual.api.event_schemas import document_webhooks
from accrual.api.metrics import MetricsMiddleware
from accrual.api.routes import (
    api_keys,
    audit,
    catalog,
    events,
    health,
    invoices,
    ledger,
    subscriptions,
    tenant,
    test_clocks,
    webhooks,
)
from accrual.domain.clock import Clock
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.services.due_work import DueWorkRegistry
from accrual.services.registry import default_registry
from accrual.store.database import Database

DESCRIPTION = """
Accrual is the source of truth for monetization state: catalog, subscriptions, usage,
invoices and the ledger.

**Authentication**: every `/v1` request carries an API key, `Authorization: Bearer acr_...`.
Keys have scopes: `admin` (everything), `write` (implies `read` and `ingest`), `read`,
`ingest` (usage events only) and `finance` (implies `read`).

**Errors** are RFC 9457 `application/problem+json`; validation errors name each failing
field with a JSON pointer (`#/name`) or the failing `parameter`.

**Idempotency**: send `Idempotency-Key` on any POST. The same key with the same request
replays the first response (`Idempotent-Replayed: true`); with a different request it is
refused with 422; while the first is still running, 409.

**Lists** are cursor-paginated: `limit` (1–100, default 20) and `cursor` (the previous
page's `next_cursor`).
"""


def create_app(
    db: Database, *, clock: Clock = SYSTEM_CLOCK, registry: DueWorkRegistry | None = None
) -> FastAPI:
    """Build the API over `db`; `clock` is the real clock unless a test says otherwise."""
    app = FastAPI(
        title="Accrual",
        version=accrual.__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.services = AppServices(db=db, clock=clock, registry=registry or default_registry())
    problems.install(app)
    app.add_middleware(MetricsMiddleware)
    for module in (
        health,
        tenant,
        api_keys,
        catalog,
        subscriptions,
        events,
        invoices,
        test_clocks,
        audit,
        webhooks,
        ledger,
    ):
        app.include_router(module.router)
    document_webhooks(app)
    return app
