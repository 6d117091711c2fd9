"""Stream messages into the usage intake: the same checks and idempotency as the HTTP API."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from accrual.domain.errors import AccrualError
from accrual.services import tenants
from accrual.services.usage import ingest as intake_store
from accrual.services.usage import intake
from accrual.store.database import Database

log = structlog.get_logger("accrual.streams")


def message_ingester(db: Database) -> Callable[[uuid.UUID, Sequence[Any], dt.datetime], dict[int, str]]:
    """An `Ingest` for `integrations.streams`: store one tenant's messages in one transaction.

    Returns the index and error of each message that is not an event, or is for a tenant that
    does not exist (for the dead letters).
    """

    def ingest(tenant_id: uuid.UUID, deliveries: Sequence[Any], now: dt.datetime) -> dict[int, str]:
        try:
            tenants.get_tenant(db, tenant_id=tenant_id)
        except tenants.TenantNotFound as exc:
            # Not ours to store, and retrying will not change that: every message is a dead letter.
            return dict.fromkeys(range(len(deliveries)), f"{exc.title}: {exc.detail}")
        events: list[intake.IncomingEvent] = []
        bad: dict[int, str] = {}
        for index, delivery in enumerate(deliveries):
            try:
                parsed, _ = intake.parse_json(delivery.data, now=now)
            except AccrualError as exc:
                bad[index] = f"{exc.title}: {exc.detail}"
                continue
            events.extend(parsed)
        if events:
            # A database that is down raises here: nothing is acknowledged, and the stream
            # delivers the messages again once the consumer is back.
            results = intake_store.ingest(db, tenant_id=tenant_id, events=events, now=now)
            for result in results:
                if result.outcome is intake_store.Outcome.REJECTED:
                    log.warning(
                        "stream event rejected",
                        tenant=str(tenant_id),
                        event=result.event_id,
                        error=result.error,
                    )
        return bad

    return ingest
