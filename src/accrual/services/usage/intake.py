"""Reading usage events: JSON batches, CloudEvents, stream messages, scenario files.

Structure is checked here, fast (msgspec), before anything is stored: a batch with any event
that is not an event is refused whole, with every bad index and field named. Numbers in
properties are read as exact decimals, never floats.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from accrual.domain.errors import InvalidInput

MAX_BATCH = 10_000
MAX_BYTES = 5 * 1024 * 1024
MAX_ID = 200


class Event(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One usage event, as a scenario file and the JSON API spell it."""

    id: str
    meter: str
    subscription: str | None = None
    customer: str | None = None
    timestamp: str | None = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


class CloudEvent(msgspec.Struct, omit_defaults=True):
    """A CloudEvents 1.0 envelope: `type` is the meter, `subject` the customer, `data` the properties.

    The extension attribute `subscription` names the subscription instead of the customer.
    """

    id: str
    source: str
    type: str
    specversion: str
    time: str | None = None
    subject: str | None = None
    subscription: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    datacontenttype: str | None = None


@dataclasses.dataclass(frozen=True)
class BadEvent:
    index: int
    field: str
    detail: str


class InvalidBatch(InvalidInput):
    """Some events of a batch are not events: the whole batch is refused, nothing of it is stored."""

    title = "Invalid events"

    def __init__(self, bad: Sequence[BadEvent]) -> None:
        first = bad[0]
        super().__init__(
            f"{len(bad)} event{'s' if len(bad) != 1 else ''} invalid; nothing was stored; "
            f"first at {first.field}: {first.detail}",
            field=first.field,
            context={
                "invalid_events": [
                    {"index": b.index, "pointer": "#" + b.field, "detail": b.detail} for b in bad
                ]
            },
        )
        self.bad = list(bad)


class IncomingEvent(msgspec.Struct, frozen=True):
    """An event that passed the structural checks, its instant parsed and its payload hashed."""

    event_id: str
    meter: str
    subscription: str | None
    customer: str | None
    ts: dt.datetime
    properties: dict[str, Any]
    properties_json: str
    payload_hash: bytes


_ENCODER = msgspec.json.Encoder(decimal_format="number", order="sorted")
_ANY = msgspec.json.Decoder(Any, float_hook=decimal.Decimal)
_EVENTS = msgspec.json.Decoder(list[Event] | Event, float_hook=decimal.Decimal)


# Usage outside these years is a mistake (a unit error, an uninitialized clock), not usage.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def _instant(value: str, *, field: str, bad: list[BadEvent], index: int) -> dt.datetime | None:
    try:
        instant = dt.datetime.fromisoformat(value)
        if instant.tzinfo is None:
            bad.append(BadEvent(index, field, f"{value!r} has no UTC offset"))
            return None
        instant = instant.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        bad.append(BadEvent(index, field, f"{value!r} is not an RFC 3339 instant"))
        return None
    if not EARLIEST <= instant < LATEST:
        bad.append(BadEvent(index, field, f"{value!r} is not between the years 2000 and 2099"))
        return None
    return instant


def _check(
    event: Event, *, index: int, prefix: str, now: dt.datetime, bad: list[BadEvent]
) -> IncomingEvent | None:
    before = len(bad)
    if not 1 <= len(event.id) <= MAX_ID:
        bad.append(BadEvent(index, f"{prefix}/id", f"id is 1 to {MAX_ID} characters"))
    if not event.meter:
        bad.append(BadEvent(index, f"{prefix}/meter", "meter is a meter's code"))
    if (event.subscription is None) == (event.customer is None):
        bad.append(
            BadEvent(index, f"{prefix}/subscription", "name the subscription or the customer (one of them)")
        )
    ts = (
        _instant(event.timestamp, field=f"{prefix}/timestamp", bad=bad, index=index)
        if event.timestamp is not None
        else now
    )
    if len(bad) > before or ts is None:
        return None
    properties_json = _ENCODER.encode(event.properties)
    # The payload as sent: an event without a timestamp sent again later is the same event.
    sent_at = ts.isoformat() if event.timestamp is not None else None
    digest = hashlib.blake2b(
        _ENCODER.encode([event.meter, event.subscription, event.customer, sent_at]), digest_size=16
    )
    digest.update(properties_json)
    return IncomingEvent(
        event_id=event.id,
        meter=event.meter,
        subscription=event.subscription,
        customer=event.customer,
        ts=ts,
        properties=event.properties,
        properties_json=properties_json.decode(),
        payload_hash=digest.digest(),
    )


def _structure_errors(raw: Any, *, index: int, prefix: str, bad: list[BadEvent]) -> Event | None:
    try:
        return msgspec.convert(raw, Event, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        # msgspec says "... - at `$.meter`": turn its path into a JSON pointer.
        field = prefix
        unknown = re.match(r"Object contains unknown field `(.+)`", message)
        if unknown:
            field = f"{prefix}/{unknown.group(1)}"
            message = f"events have no field {unknown.group(1)!r}; put it under properties"
        elif "at `$" in message:
            path = message.rsplit("at `$", 1)[1].rstrip("`")
            field = prefix + path.replace(".", "/").replace("[", "/").replace("]", "")
            message = message.rsplit(" - at", 1)[0]
        bad.append(BadEvent(index, field, message))
        return None


def _size(count: int) -> None:
    if count > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} events, this one {count}", field="/")
    if not count:
        raise InvalidInput("the batch holds no event", field="/")


def _checked(items: Sequence[Any], *, now: dt.datetime, batch: bool) -> list[IncomingEvent]:
    """Check every item (an `Event`, or anything decoded to be converted to one); name every fault."""
    _size(len(items))
    bad: list[BadEvent] = []
    checked = []
    for index, item in enumerate(items):
        prefix = f"/{index}" if batch else ""
        event = (
            item if isinstance(item, Event) else _structure_errors(item, index=index, prefix=prefix, bad=bad)
        )
        if event is not None:
            incoming = _check(event, index=index, prefix=prefix, now=now, bad=bad)
            if incoming is not None:
                checked.append(incoming)
    if bad:
        raise InvalidBatch(bad)
    return checked


def _decode(body: bytes) -> Any:
    if len(body) > MAX_BYTES:
        raise InvalidInput(f"a request body holds at most {MAX_BYTES} bytes", field="/")
    try:
        return _ANY.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", field="/") from None


def parse_json(body: bytes, *, now: dt.datetime) -> tuple[list[IncomingEvent], bool]:
    """Events from a JSON body: one event object, or a list of them. Returns (events, was_batch).

    Well-formed bodies, the usual case, are decoded straight into events; a body with any
    structural fault is decoded again, loosely, to name every fault.
    """
    if len(body) <= MAX_BYTES:
        try:
            typed = _EVENTS.decode(body)
        except msgspec.DecodeError:
            pass
        else:
            if isinstance(typed, Event):
                return _checked([typed], now=now, batch=False), False
            return _checked(typed, now=now, batch=True), True
    decoded = _decode(body)
    if isinstance(decoded, list):
        return _checked(decoded, now=now, batch=True), True
    return _checked([decoded], now=now, batch=False), False


def _from_cloud(raw: Any, *, index: int, prefix: str, bad: list[BadEvent]) -> Any:
    try:
        cloud = msgspec.convert(raw, CloudEvent, strict=True)
    except msgspec.ValidationError as exc:
        bad.append(BadEvent(index, prefix or "/", str(exc)))
        return None
    if cloud.specversion != "1.0":
        bad.append(BadEvent(index, f"{prefix}/specversion", "only CloudEvents 1.0 is read"))
        return None
    event: dict[str, Any] = {"id": cloud.id, "meter": cloud.type, "properties": cloud.data}
    if cloud.time is not None:
        event["timestamp"] = cloud.time
    if cloud.subscription is not None:
        event["subscription"] = cloud.subscription
    elif cloud.subject is not None:
        event["customer"] = cloud.subject
    return event


def parse_cloudevents(body: bytes, *, now: dt.datetime, batch: bool) -> list[IncomingEvent]:
    """Events from `application/cloudevents+json` (one) or `application/cloudevents-batch+json` (a list)."""
    decoded = _decode(body)
    if batch != isinstance(decoded, list):
        raise InvalidInput(
            "a CloudEvents batch is a JSON array" if batch else "a single CloudEvent is a JSON object",
            field="/",
        )
    items = decoded if batch else [decoded]
    bad: list[BadEvent] = []
    converted = [
        _from_cloud(raw, index=i, prefix=f"/{i}" if batch else "", bad=bad) for i, raw in enumerate(items)
    ]
    if bad:
        raise InvalidBatch(bad)
    return _checked(converted, now=now, batch=batch)


def parse_events(items: Sequence[Any], *, now: dt.datetime) -> list[IncomingEvent]:
    """Events already decoded (scenario files, stream messages)."""
    return _checked(items, now=now, batch=True)
