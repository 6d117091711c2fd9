"""Idempotent requests with Stripe's semantics.

The first request with a key runs and its response is stored under (tenant, key); a retry
with the same key and the same request gets that response again, errors included, without
running anything; a retry with a different request is refused (`IdempotencyKeyReused`); a
retry while the first is still running is refused (`IdempotencyKeyInUse`). Validation errors
are not stored, so a corrected request may reuse the key.

Single-transaction work runs as a savepoint of the transaction that stores the response, so
the effect and the stored response commit together or not at all. Work that spans several
transactions (advancing a test clock) is given the database itself and must be naturally
idempotent; its response is stored once it is done.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable

from accrual.domain.errors import AccrualError, Conflict, ErrorKind, InvalidInput
from accrual.store import idempotency as idempotency_store
from accrual.store.database import BoundTransactions, Database, TransactionSource

StoredResponse = idempotency_store.StoredResponse


class IdempotencyKeyReused(InvalidInput):
    title = "Idempotency key reused with a different request"


class IdempotencyKeyInUse(Conflict):
    title = "A request with this idempotency key is in progress"


@dataclasses.dataclass(frozen=True)
class IdempotentRequest:
    tenant_id: uuid.UUID
    key: str
    method: str
    path: str
    body: bytes

    @property
    def fingerprint(self) -> bytes:
        try:
            # Two spellings of the same JSON are the same request.
            canonical = json.dumps(json.loads(self.body), sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            canonical = self.body
        return hashlib.sha256(b"\n".join([self.method.encode(), self.path.encode(), canonical])).digest()


def validate_key(key: str) -> str:
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise InvalidInput("Idempotency-Key must be 1 to 255 printable characters", field="Idempotency-Key")
    return key


def run_idempotently(
    db: Database,
    request: IdempotentRequest,
    *,
    handler: Callable[[TransactionSource], StoredResponse],
    render_error: Callable[[AccrualError], StoredResponse],
    now: dt.datetime,
    atomic: bool = True,
) -> tuple[StoredResponse, bool]:
    """Run `handler` once per (tenant, key); return its response and whether it was a replay."""
    fingerprint = request.fingerprint
    with db.transaction() as conn:
        if not idempotency_store.try_lock(conn, tenant_id=request.tenant_id, key=request.key):
            raise IdempotencyKeyInUse(
                "another request with this Idempotency-Key is in progress; retry once it has finished",
                field="Idempotency-Key",
            )
        stored = idempotency_store.get(conn, tenant_id=request.tenant_id, key=request.key)
        if stored is not None:
            if stored.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    f"this Idempotency-Key was first used for {stored.request_method} {stored.request_path} "
                    "with a different body; use a new key for a different request",
                    field="Idempotency-Key",
                )
            return stored, True
        try:
            response = handler(BoundTransactions(conn) if atomic else db)
        except AccrualError as err:
            if err.kind is ErrorKind.INVALID:
                raise
            response = render_error(err)
        response = dataclasses.replace(
            response, request_method=request.method, request_path=request.path, request_hash=fingerprint
        )
        idempotency_store.save(conn, tenant_id=request.tenant_id, key=request.key, response=response, at=now)
        return response, False


def prune(db: Database, *, older_than: dt.datetime) -> int:
    """Forget stored responses created before `older_than`; return how many."""
    total = 0
    while True:
        with db.transaction() as conn:
            deleted = idempotency_store.delete_older_than(conn, older_than)
        total += deleted
        if deleted == 0:
            return total
