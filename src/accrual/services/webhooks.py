"""Webhook endpoints, their secrets, deliveries, redelivery and replay, and the pull feed.

An endpoint is a URL, an optional filter of event types, and a signing secret (`whsec_…`).
Rotating the secret keeps the old one signing for an overlap window (a day by default), so
every delivery in that window carries both signatures and a receiver can switch at leisure.
Disabling stops deliveries to the endpoint (its pending ones wait); enabling resumes them.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from accrual.domain import events
from accrual.domain.errors import Conflict, InvalidInput, NotFound
from accrual.domain.webhooks import AddressPolicy, parse_networks, parse_target
from accrual.services.unit_of_work import Actor, UnitOfWork, read_only, unit_of_work
from accrual.store import ids
from accrual.store import tenants as tenant_store
from accrual.store import webhooks as store
from accrual.store.database import TransactionSource
from accrual.store.pagination import InvalidCursor, Page, decode_cursor, encode_cursor, fetch_page
from accrual.store.schema import webhook_deliveries

DEFAULT_OVERLAP = dt.timedelta(hours=24)
MAX_OVERLAP = dt.timedelta(days=7)
MAX_EVENT_TYPES = 100


class EndpointNotFound(NotFound):
    title = "Webhook endpoint not found"


class EventNotFound(NotFound):
    title = "Event not found"


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and 24 random bytes in base64, as Standard Webhooks has it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _event_types(values: Sequence[object] | None) -> list[str]:
    if values is None:
        return []
    if len(values) > MAX_EVENT_TYPES:
        raise InvalidInput(f"at most {MAX_EVENT_TYPES} event types", field="/event_types")
    found: list[str] = []
    for i, value in enumerate(values):
        if not isinstance(value, str) or not events.is_valid_filter(value.strip()):
            raise InvalidInput(
                "an event type is a known type such as invoice.paid, a pattern such as invoice.*, or *"
                " (the catalogue is in the API's webhooks section)",
                field=f"/event_types/{i}",
            )
        if value.strip() not in found:
            found.append(value.strip())
    return found


def _check_description(description: str) -> str:
    if len(description) > 500:
        raise InvalidInput("description is at most 500 characters", field="/description")
    return description


def _policy(conn: sa.Connection, tenant_id: uuid.UUID) -> AddressPolicy:
    tenant = tenant_store.get(conn, tenant_id)
    assert tenant is not None  # noqa: S101 - the caller's tenant exists
    return AddressPolicy.of(
        allow_insecure=tenant.allow_insecure_webhooks, allowed_networks=tenant.webhook_allowed_networks
    )


@dataclasses.dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: store.Endpoint
    secret: str


def create_endpoint(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    url: str,
    event_types: Sequence[object] | None = None,
    description: str = "",
    enabled: bool = True,
    actor: Actor,
    now: dt.datetime,
) -> CreatedEndpoint:
    """Register a URL to receive events; return it with its new signing secret."""
    types = _event_types(event_types)
    _check_description(description)
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        target = parse_target(url, policy=_policy(uow.conn, tenant_id))
        endpoint = store.Endpoint(
            tenant_id=tenant_id,
            endpoint_id=ids.new_id(),
            url=target.url,
            description=description,
            event_types=types,
            enabled=enabled,
            disabled_reason=None if enabled else "manual",
            disabled_at=None if enabled else now,
            failing_since=None,
            created_at=now,
            updated_at=now,
        )
        store.insert_endpoint(uow.conn, endpoint)
        secret = store.insert_secret(
            uow.conn, tenant_id=tenant_id, endpoint_id=endpoint.endpoint_id, secret=new_secret(), now=now
        )
        _announce(uow, "endpoint.created", None, endpoint)
    return CreatedEndpoint(endpoint, secret.secret)


def _announce(uow: UnitOfWork, action: str, before: store.Endpoint | None, after: store.Endpoint) -> None:
    uow.changed(
        action,
        entity_type="webhook_endpoint",
        entity_id=str(after.endpoint_id),
        before=before.snapshot() if before else None,
        after=after.snapshot(),
    )


def _require(
    conn: sa.Connection, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, for_update: bool = False
) -> store.Endpoint:
    endpoint = store.get_endpoint(conn, tenant_id=tenant_id, endpoint_id=endpoint_id, for_update=for_update)
    if endpoint is None:
        raise EndpointNotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def _locked(uow: UnitOfWork, endpoint_id: uuid.UUID) -> store.Endpoint:
    return _require(uow.conn, tenant_id=uow.tenant_id, endpoint_id=endpoint_id, for_update=True)


def update_endpoint(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    url: str | None = None,
    event_types: Sequence[object] | None = None,
    description: str | None = None,
    actor: Actor,
    now: dt.datetime,
) -> store.Endpoint:
    """Change an endpoint's URL, event types or description; a change of nothing writes nothing."""
    values: dict[str, Any] = {}
    if event_types is not None:
        values["event_types"] = _event_types(event_types)
    if description is not None:
        values["description"] = _check_description(description)
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        if url is not None:
            values["url"] = parse_target(url, policy=_policy(uow.conn, tenant_id)).url
        before = _locked(uow, endpoint_id)
        if all(getattr(before, k) == v for k, v in values.items()):
            return before
        after = store.update_endpoint(
            uow.conn, tenant_id=tenant_id, endpoint_id=endpoint_id, updated_at=now, **values
        )
        _announce(uow, "endpoint.updated", before, after)
        return after


def set_enabled(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    enabled: bool,
    reason: str = "manual",
    actor: Actor,
    now: dt.datetime,
) -> store.Endpoint:
    """Disable an endpoint (its deliveries wait) or enable it (they resume, its failure streak
    forgotten); doing what is already done changes nothing."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        before = _locked(uow, endpoint_id)
        if before.enabled == enabled:
            return before
        after = store.update_endpoint(
            uow.conn,
            tenant_id=tenant_id,
            endpoint_id=endpoint_id,
            enabled=enabled,
            disabled_reason=None if enabled else reason,
            disabled_at=None if enabled else now,
            failing_since=None,
            updated_at=now,
        )
        _announce(uow, "endpoint.enabled" if enabled else "endpoint.disabled", before, after)
        return after


def rotate_secret(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    overlap: dt.timedelta = DEFAULT_OVERLAP,
    actor: Actor,
    now: dt.datetime,
) -> str:
    """Give the endpoint a new secret; the current one keeps signing for `overlap` (both
    signatures are sent meanwhile). Returns the new secret."""
    if not dt.timedelta(0) <= overlap <= MAX_OVERLAP:
        raise InvalidInput("the overlap is 0 to 7 days (in seconds)", field="/overlap_seconds")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        endpoint = _locked(uow, endpoint_id)
        store.expire_current_secret(uow.conn, tenant_id=tenant_id, endpoint_id=endpoint_id, at=now + overlap)
        secret = store.insert_secret(
            uow.conn, tenant_id=tenant_id, endpoint_id=endpoint_id, secret=new_secret(), now=now
        )
        uow.changed(
            "endpoint.secret_rotated",
            entity_type="webhook_endpoint",
            entity_id=str(endpoint_id),
            before=None,
            after={**endpoint.snapshot(), "previous_secret_expires_at": (now + overlap).isoformat()},
        )
        return secret.secret


def get_endpoint(db: TransactionSource, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> store.Endpoint:
    with read_only(db) as conn:
        return _require(conn, tenant_id=tenant_id, endpoint_id=endpoint_id)


def signing_secrets(
    db: TransactionSource, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, now: dt.datetime
) -> list[store.Secret]:
    """The secrets that sign the endpoint's deliveries now, newest first."""
    with read_only(db) as conn:
        _require(conn, tenant_id=tenant_id, endpoint_id=endpoint_id)
        return store.live_secrets(conn, tenant_id=tenant_id, endpoint_id=endpoint_id, now=now)


def list_endpoints(
    db: TransactionSource, *, tenant_id: uuid.UUID, cursor: str | None, limit: int
) -> Page[store.Endpoint]:
    query = store.select_endpoints(tenant_id=tenant_id)
    with read_only(db) as conn:
        return fetch_page(
            conn,
            query,
            query.selected_columns.endpoint_id,
            cursor=cursor,
            limit=limit,
            descending=False,
            to_item=store.endpoint_from_row,
            key_of=lambda e: e.endpoint_id,
            parse_key=uuid.UUID,
        )


@dataclasses.dataclass(frozen=True)
class Delivery:
    """An event's delivery to an endpoint, with every attempt at it."""

    row: sa.Row[Any]
    attempts: list[sa.Row[Any]]


def list_deliveries(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Delivery]:
    """An endpoint's deliveries, newest first, each with its attempts."""
    if status is not None and status not in ("pending", "succeeded", "failed"):
        raise InvalidInput("status is pending, succeeded or failed", field="status")
    query = store.select_deliveries(tenant_id=tenant_id, endpoint_id=endpoint_id)
    if status is not None:
        query = query.where(webhook_deliveries.c.status == status)
    with read_only(db) as conn:
        _require(conn, tenant_id=tenant_id, endpoint_id=endpoint_id)
        page = fetch_page(
            conn,
            query,
            sa.tuple_(webhook_deliveries.c.created_at, webhook_deliveries.c.delivery_id),
            cursor=cursor,
            limit=limit,
            descending=True,
            to_item=lambda row: row,
            key_of=lambda row: [row.created_at.isoformat(), str(row.delivery_id)],
            parse_key=lambda k: (dt.datetime.fromisoformat(k[0]), uuid.UUID(k[1])),
        )
        attempts = store.attempts_of(
            conn, tenant_id=tenant_id, delivery_ids=[r.delivery_id for r in page.items]
        )
    return Page([Delivery(r, attempts[r.delivery_id]) for r in page.items], page.next_cursor)


def redeliver(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    event_id: uuid.UUID,
    endpoint_id: uuid.UUID | None,
    actor: Actor,
    now: dt.datetime,
) -> int:
    """Send an event again, with its original `webhook-id`, to one endpoint or to every enabled
    endpoint that takes it; return how many deliveries that made."""
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        if endpoint_id is not None:
            _enabled(uow, endpoint_id)
        if not store.event_exists(uow.conn, tenant_id=tenant_id, event_id=event_id):
            raise EventNotFound(f"no event {event_id}")
        made = store.create_deliveries(
            uow.conn,
            tenant_id=tenant_id,
            origin="redeliver",
            now=now,
            endpoint_id=endpoint_id,
            event_id=event_id,
        )
        if made == 0:
            raise Conflict(
                "no enabled endpoint takes this event yet (the relay may not have reached it)",
                field="/endpoint_id" if endpoint_id else None,
            )
        uow.record(
            "event.redelivered",
            entity_type="event",
            entity_id=str(event_id),
            before=None,
            after={"endpoint_id": str(endpoint_id) if endpoint_id else None, "deliveries": made},
        )
        return made


def _enabled(uow: UnitOfWork, endpoint_id: uuid.UUID) -> store.Endpoint:
    endpoint = _locked(uow, endpoint_id)
    if not endpoint.enabled:
        raise Conflict(f"webhook endpoint {endpoint_id} is disabled; enable it first", field="/endpoint_id")
    return endpoint


def replay(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    since: dt.datetime,
    until: dt.datetime | None,
    actor: Actor,
    now: dt.datetime,
) -> int:
    """Send again every event the endpoint takes that occurred in [since, until), in order;
    return how many deliveries that made."""
    if until is not None and until <= since:
        raise InvalidInput("until must be after since", field="until")
    with unit_of_work(db, tenant_id=tenant_id, actor=actor, now=now) as uow:
        _enabled(uow, endpoint_id)
        made = store.create_deliveries(
            uow.conn,
            tenant_id=tenant_id,
            origin="replay",
            now=now,
            endpoint_id=endpoint_id,
            since=since,
            until=until,
        )
        uow.record(
            "endpoint.replayed",
            entity_type="webhook_endpoint",
            entity_id=str(endpoint_id),
            before=None,
            after={
                "since": since.isoformat(),
                "until": until.isoformat() if until else None,
                "deliveries": made,
            },
        )
        return made


@dataclasses.dataclass(frozen=True)
class OutboxPage:
    events: list[sa.Row[Any]]
    next_cursor: str | None


def pull(
    db: TransactionSource,
    *,
    tenant_id: uuid.UUID,
    cursor: str | None,
    limit: int,
    event_types: Sequence[str] = (),
) -> OutboxPage:
    """The tenant's events after `cursor`, in a stable order that never skips one: a consumer
    that keeps the returned cursor and asks again sees every event once (the cursor is returned
    even when the page is empty, so polling resumes where it stopped)."""
    after: tuple[int, int] | None = None
    if cursor is not None:
        key = decode_cursor(cursor)
        try:
            after = (int(key[0]), int(key[1]))
        except (TypeError, ValueError, IndexError):
            raise InvalidCursor("cursor is not one this API returned", field="cursor") from None
    with read_only(db) as conn:
        rows = store.pull(conn, tenant_id=tenant_id, after=after, limit=limit, event_types=event_types)
    if rows:
        last = rows[-1]
        cursor = encode_cursor([last.xid, last.seq])
    return OutboxPage(rows, cursor)


def update_settings(*, allow_insecure: object = None, allowed_networks: object = None) -> dict[str, object]:
    """The tenant's webhook settings as column values, checked."""
    values: dict[str, object] = {}
    if allow_insecure is not None:
        if not isinstance(allow_insecure, bool):
            raise InvalidInput("allow_insecure is true or false", field="/webhooks/allow_insecure")
        values["allow_insecure_webhooks"] = allow_insecure
    if allowed_networks is not None:
        if not isinstance(allowed_networks, list):
            raise InvalidInput(
                "allowed_networks is a list of CIDR networks", field="/webhooks/allowed_networks"
            )
        values["webhook_allowed_networks"] = parse_networks(
            allowed_networks, field="/webhooks/allowed_networks"
        )
    return values
