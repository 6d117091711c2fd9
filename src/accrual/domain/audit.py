"""The audit log's hash chain.

Each tenant's audit records form a chain: record n stores the hash of record n-1 and its own
hash, `sha256(prev_hash || canonical_json(record))`. Changing, removing or reordering any
record breaks every hash after it, so `verify_chain` can name the first record that was
tampered with.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from accrual.domain.clock import require_aware

GENESIS_HASH = bytes(32)

JsonValue = None | bool | int | str | list["JsonValue"] | dict[str, "JsonValue"]


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}/{i}")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: object keys must be strings, got {key!r}")
            _check_json(item, f"{path}/{key}")
        return
    # Floats and decimals have more than one JSON spelling; amounts are stored as strings.
    raise TypeError(f"{path or '/'}: {type(value).__name__} has no canonical JSON form here")


def canonical_json(value: Any) -> bytes:
    """The one byte string for a JSON value: sorted keys, no spaces, UTF-8.

    Only null, booleans, integers, strings, lists and string-keyed objects are accepted, so
    the same value always has the same bytes after a round trip through the database.
    """
    _check_json(value, "")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _json_string(value: str) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    text: str = json.encoder.encode_basestring(value)
    return text


def format_instant(instant: dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds and a `Z`: the canonical spelling of an instant."""
    return require_aware(instant).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """One change: who did what to which entity, and its state before and after."""

    tenant_id: str
    seq: int
    occurred_at: dt.datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None

    def canonical(self) -> bytes:
        return canonical_json(
            {
                "tenant_id": self.tenant_id,
                "seq": self.seq,
                "occurred_at": format_instant(self.occurred_at),
                "actor": self.actor,
                "action": self.action,
                "entity_type": self.entity_type,
                "entity_id": self.entity_id,
                "before": dict(self.before) if self.before is not None else None,
                "after": dict(self.after) if self.after is not None else None,
            }
        )

    def canonical_with(self, *, before: str | None, after: str | None) -> bytes:
        """`canonical()`, given `before` and `after` already as their canonical JSON text
        (`canonical_json(...).decode()`; None for no state): the same bytes, encoding only the
        record's other fields."""
        # In canonical_json's key order, each string as json.dumps(..., ensure_ascii=False) writes it.
        text = _json_string
        fields = (
            ("action", text(self.action)),
            ("actor", text(self.actor)),
            ("after", "null" if after is None else after),
            ("before", "null" if before is None else before),
            ("entity_id", text(self.entity_id)),
            ("entity_type", text(self.entity_type)),
            ("occurred_at", text(format_instant(self.occurred_at))),
            ("seq", str(int(self.seq))),
            ("tenant_id", text(self.tenant_id)),
        )
        return ("{" + ",".join(f'"{name}":{text}' for name, text in fields) + "}").encode()


def chain_hash(prev_hash: bytes, record: AuditRecord, *, canonical: bytes | None = None) -> bytes:
    """The hash of `record` when it follows a record whose hash is `prev_hash` (`canonical`:
    the record's canonical bytes, when the caller has them)."""
    return hashlib.sha256(prev_hash + (record.canonical() if canonical is None else canonical)).digest()


@dataclasses.dataclass(frozen=True)
class ChainBreak:
    """The first record whose stored hashes do not match the chain, and why."""

    seq: int
    reason: str


def verify_chain(rows: Iterable[tuple[AuditRecord, bytes, bytes]]) -> tuple[int, ChainBreak | None]:
    """Walk (record, stored prev_hash, stored hash) in `seq` order.

    Return how many records were checked and the first break, or None when the chain holds.
    """
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for record, prev_hash, stored_hash in rows:
        checked += 1
        if record.seq != expected_seq:
            return checked, ChainBreak(record.seq, f"expected seq {expected_seq}: a record is missing")
        if prev_hash != expected_prev:
            return checked, ChainBreak(record.seq, "prev_hash does not match the previous record's hash")
        if chain_hash(prev_hash, record) != stored_hash:
            return checked, ChainBreak(record.seq, "hash does not match the record's contents")
        expected_prev = stored_hash
        expected_seq += 1
    return checked, None
