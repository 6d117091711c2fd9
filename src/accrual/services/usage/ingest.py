"""Taking usage events in: exactly once per id, attributed to a subscription, or quarantined.

An event is durable before the caller hears back. Its id is recorded for ever: a repeat with
the same payload is a duplicate that changes nothing; a repeat with another payload is
rejected, and the first stands. An event that cannot be attributed (unknown meter, customer
or subscription, outside the subscription's life, a value the meter cannot read) is kept in
quarantine with its reason and counted once the reason goes away. An event for a period
already handed to billing is late: billed on the next invoice, or refused under the
tenant's `late_events: reject` policy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa
from prometheus_client import Counter, Histogram

from accrual.domain.clock import require_aware
from accrual.domain.usage import bucket_start
from accrual.services.usage.intake import IncomingEvent
from accrual.store import outbox
from accrual.store import tenants as tenant_store
from accrual.store import usage as store
from accrual.store.database import Database
from accrual.store.ids import new_id

EVENTS = Counter("accrual_usage_events_total", "Usage events taken in, by outcome.", ["outcome"])
BATCH_SECONDS = Histogram(
    "accrual_usage_batch_seconds",
    "Time to store a batch of usage events.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

_PROPERTIES = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"  # stored for billing (attributed or quarantined)
    DUPLICATE = "duplicate"  # seen before with the same payload: nothing changed
    REJECTED = "rejected"  # refused: a conflicting payload for a known id, or late under `reject`


class Result(msgspec.Struct, frozen=True, omit_defaults=True):
    """One event's outcome; encodes as the API answers it (`{"id": ..., "status": ...}`)."""

    event_id: str = msgspec.field(name="id")
    outcome: Outcome = msgspec.field(name="status")
    quarantined: str | None = None  # the reason, for an accepted event held in quarantine
    late: bool = False
    error: str | None = None


class _Attribution(NamedTuple):
    subscription_id: uuid.UUID | None
    meter_id: uuid.UUID | None
    reason: str | None
    detail: str
    late: bool


def _numeric(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | Decimal):
        return True
    return isinstance(value, str) and _NUMBER.fullmatch(value) is not None


def _value_problem(meter: sa.Row[Any], event: IncomingEvent) -> str | None:
    if meter.aggregation == "count":
        return None
    value = event.properties.get(meter.field)
    if value is None:
        return f"meter {meter.code} reads property {meter.field!r}, which the event lacks"
    if meter.aggregation != "unique_count" and not _numeric(value):
        return f"meter {meter.code} sums property {meter.field!r}, but {value!r} is not a number"
    return None


def _live(sub: Any, ts: dt.datetime) -> bool:
    """Whether the subscription was live at `ts` (the quick check; `_within` says why not)."""
    return sub.start_at <= ts and sub.status != "pending" and (sub.ended_at is None or ts < sub.ended_at)


def _within(sub: Any, ts: dt.datetime) -> tuple[str | None, str]:
    if ts < sub.start_at or sub.status == "pending":
        return "before_start", f"the subscription starts {sub.start_at.isoformat()}"
    if sub.ended_at is not None and ts >= sub.ended_at:
        return "after_end", f"the subscription ended {sub.ended_at.isoformat()}"
    return None, ""


class _Resolver:
    """Attribution of one batch's events, with the lookups it needs done once per batch."""

    def __init__(self, conn: sa.Connection, tenant_id: uuid.UUID, events: Sequence[IncomingEvent]) -> None:
        self.meters = store.meters_by_code(conn, tenant_id=tenant_id, codes=sorted({e.meter for e in events}))
        sub_refs = sorted({e.subscription for e in events if e.subscription is not None})
        self.subscriptions = store.subscriptions_by_ref(conn, tenant_id=tenant_id, refs=sub_refs)
        unresolved = [r for r in sub_refs if r not in self.subscriptions]
        # An event may name a subscription by our id when it has no external id.
        self.subscriptions |= store.subscriptions_by_id(conn, tenant_id=tenant_id, ids=unresolved)
        customer_refs = sorted({e.customer for e in events if e.customer is not None})
        self.customers, rows = store.customer_subscriptions(conn, tenant_id=tenant_id, refs=customer_refs)
        self.by_customer: dict[str, list[Any]] = {}
        for row in rows:
            self.by_customer.setdefault(row.customer_ref, []).append(row)
        self._counted: dict[tuple[uuid.UUID, uuid.UUID], _Attribution] = {}

    def _to(self, subscription_id: uuid.UUID, meter_id: uuid.UUID) -> _Attribution:
        """The (shared, immutable) attribution of an event counted for this subscription and meter."""
        key = (subscription_id, meter_id)
        found = self._counted.get(key)
        if found is None:
            found = self._counted[key] = _Attribution(subscription_id, meter_id, None, "", late=False)
        return found

    def candidate(self, event: IncomingEvent) -> _Attribution:  # noqa: PLR0911 - one return per reason
        """The subscription the event belongs to, or the reason it cannot be counted (yet)."""
        meter = self.meters.get(event.meter)
        if meter is None:
            return _Attribution(None, None, "unknown_meter", f"there is no meter {event.meter!r}", late=False)
        problem = _value_problem(meter, event)
        if problem is not None:
            return _Attribution(None, meter.meter_id, "invalid_value", problem, late=False)
        if event.subscription is not None:
            sub = self.subscriptions.get(event.subscription)
            if sub is None:
                detail = f"there is no subscription {event.subscription!r}"
                return _Attribution(None, meter.meter_id, "unknown_subscription", detail, late=False)
            return self._to(sub.subscription_id, meter.meter_id)
        assert event.customer is not None  # noqa: S101 - the intake checked one of the two is named
        if event.customer not in self.customers:
            return _Attribution(
                None,
                meter.meter_id,
                "unknown_customer",
                f"there is no customer {event.customer!r}",
                late=False,
            )
        live = [s for s in self.by_customer.get(event.customer, ()) if _live(s, event.ts)]
        charging = [s for s in live if meter.meter_id in s.meter_ids] or live
        if not charging:
            detail = f"customer {event.customer!r} has no subscription at {event.ts.isoformat()}"
            return _Attribution(None, meter.meter_id, "no_subscription", detail, late=False)
        if len(charging) > 1:
            detail = f"customer {event.customer!r} has {len(charging)} subscriptions for meter {event.meter}"
            return _Attribution(None, meter.meter_id, "ambiguous_subscription", detail, late=False)
        return self._to(charging[0].subscription_id, meter.meter_id)


def _settle(candidate: _Attribution, event: IncomingEvent, locked: dict[uuid.UUID, Any]) -> _Attribution:
    """Check an attributed event against its subscription's life and billing, as locked now."""
    if candidate.subscription_id is None:
        return candidate
    sub = locked[candidate.subscription_id]
    if not _live(sub, event.ts):
        reason, detail = _within(sub, event.ts)
        return _Attribution(None, candidate.meter_id, reason, detail, late=False)
    if sub.usage_closed_until is not None and event.ts < sub.usage_closed_until:
        return candidate._replace(late=True)
    return candidate


@dataclasses.dataclass(frozen=True)
class Attributed:
    by_id: dict[str, _Attribution]
    grids: dict[uuid.UUID, dt.timedelta]  # each locked subscription's rollup grid

    def __getitem__(self, event_id: str) -> _Attribution:
        return self.by_id[event_id]

    def buckets(self, events: Sequence[IncomingEvent]) -> list[dt.datetime]:
        """The rollup bucket of each attributed event, on its subscription's grid."""
        grids = self.grids
        by_id = self.by_id
        return [bucket_start(e.ts, grids[by_id[e.event_id].subscription_id]) for e in events]  # type: ignore[index]


def attribute(conn: sa.Connection, tenant_id: uuid.UUID, events: Sequence[IncomingEvent]) -> Attributed:
    """Attribute events to subscriptions (share-locked), or give each the reason it is held."""
    resolver = _Resolver(conn, tenant_id, events)
    candidates = {e.event_id: resolver.candidate(e) for e in events}
    ids = sorted({c.subscription_id for c in candidates.values() if c.subscription_id is not None})
    locked = store.lock_subscriptions(conn, tenant_id=tenant_id, ids=ids)
    return Attributed(
        by_id={e.event_id: _settle(candidates[e.event_id], e, locked) for e in events},
        grids={sid: dt.timedelta(microseconds=row.usage_grid_offset_us) for sid, row in locked.items()},
    )


def ingest(
    db: Database, *, tenant_id: uuid.UUID, events: Sequence[IncomingEvent], now: dt.datetime
) -> list[Result]:
    """Store a batch of checked events in one transaction; return each event's outcome, in order."""
    now = require_aware(now, name="now")
    with BATCH_SECONDS.time():
        store.ensure_partitions(db, (e.ts for e in events))
        results = _ingest(db, tenant_id=tenant_id, events=events, now=now)
    tally = dict.fromkeys(Outcome, 0)
    for result in results:
        tally[result.outcome] += 1
    for outcome, count in tally.items():
        if count:
            EVENTS.labels(outcome.value).inc(count)
    return results


def _ingest(
    db: Database, *, tenant_id: uuid.UUID, events: Sequence[IncomingEvent], now: dt.datetime
) -> list[Result]:
    # Within the batch, the first event with an id is the one that counts.
    first: dict[str, IncomingEvent] = {}
    for event in events:
        first.setdefault(event.event_id, event)
    unique = list(first.values())
    with db.transaction() as conn:
        tenant = tenant_store.get(conn, tenant_id)
        reject_late = tenant is not None and tenant.late_events == "reject"
        attributions = attribute(conn, tenant_id, unique)
        by_id = attributions.by_id
        refused = {
            e.event_id: "late: the event's period has already been invoiced (late_events: reject)"
            for e in unique
            if reject_late and by_id[e.event_id].late
        }
        fresh = store.claim_ids(
            conn,
            tenant_id=tenant_id,
            event_ids=[e.event_id for e in unique],
            hashes=[e.payload_hash for e in unique],
            instants=[e.ts for e in unique],
            rejected=[refused.get(e.event_id) for e in unique],
            now=now,
        )
        known = store.known_ids(
            conn, tenant_id=tenant_id, event_ids=[e.event_id for e in unique if e.event_id not in fresh]
        )
        stored = [e for e in unique if e.event_id in fresh and e.event_id not in refused]
        counted = [e for e in stored if by_id[e.event_id].reason is None]
        held = [e for e in stored if by_id[e.event_id].reason]
        counted_to = [by_id[e.event_id] for e in counted]
        store.insert_events(
            conn,
            tenant_id=tenant_id,
            subscription_ids=[a.subscription_id for a in counted_to],  # type: ignore[misc]
            meter_ids=[a.meter_id for a in counted_to],  # type: ignore[misc]
            instants=[e.ts for e in counted],
            buckets=attributions.buckets(counted),
            event_ids=[e.event_id for e in counted],
            properties=[e.properties_json for e in counted],
            late=[a.late for a in counted_to],
            now=now,
        )
        store.insert_quarantine(
            conn,
            tenant_id=tenant_id,
            rows=[
                {
                    "event_id": e.event_id,
                    "meter": e.meter,
                    "subscription_ref": e.subscription,
                    "customer_ref": e.customer,
                    "ts": e.ts,
                    "properties": e.properties_json,
                    "reason": by_id[e.event_id].reason,
                    "detail": by_id[e.event_id].detail,
                }
                for e in held
            ],
            now=now,
        )
        outbox.append(conn, tenant_id=tenant_id, events=quarantined_events(held, by_id, now=now))
    return [
        _result(e, first=first, fresh=fresh, known=known, attributions=by_id, refused=refused) for e in events
    ]


def quarantined_events(
    held: Sequence[IncomingEvent], attributions: dict[str, _Attribution], *, now: dt.datetime
) -> list[outbox.PendingEvent]:
    """One `usage.quarantined` outbox event per event newly held, carrying it as it was sent."""
    return [
        outbox.PendingEvent(
            event_id=new_id(),
            event_type="usage.quarantined",
            entity_type="usage_event",
            entity_id=e.event_id,
            payload={
                "id": e.event_id,
                "meter": e.meter,
                "subscription": e.subscription,
                "customer": e.customer,
                "timestamp": e.ts.isoformat(),
                # As encoded for storage, so a caller's float reads as the exact decimal stored.
                "properties": _PROPERTIES.decode(e.properties_json),
                "reason": attributions[e.event_id].reason,
                "detail": attributions[e.event_id].detail,
                "received_at": now.isoformat(),
            },
            occurred_at=now,
        )
        for e in held
    ]


def _result(
    event: IncomingEvent,
    *,
    first: dict[str, IncomingEvent],
    fresh: set[str],
    known: dict[str, Any],
    attributions: dict[str, _Attribution],
    refused: dict[str, str],
) -> Result:
    original = first[event.event_id]
    if original is event and event.event_id in fresh:
        if event.event_id in refused:
            return Result(event.event_id, Outcome.REJECTED, error=refused[event.event_id])
        attribution = attributions[event.event_id]
        return Result(event.event_id, Outcome.ACCEPTED, quarantined=attribution.reason, late=attribution.late)
    if original is not event and original.event_id in fresh:  # a repeat of an id new in this batch
        stored_hash, stored_rejection = original.payload_hash, refused.get(original.event_id)
    else:  # the id was recorded before this batch: what was recorded then stands
        stored_hash, stored_rejection = known[event.event_id].payload_hash, known[event.event_id].rejected
    if event.payload_hash != stored_hash:
        return Result(
            event.event_id,
            Outcome.REJECTED,
            error="conflict: this id was first used with a different payload, which stands",
        )
    if stored_rejection:
        return Result(event.event_id, Outcome.REJECTED, error=stored_rejection)
    return Result(event.event_id, Outcome.DUPLICATE)
