"""The webhook relay: outbox events to signed HTTP deliveries, at least once, in order per entity.

A pass has three steps, and the HTTP requests run in none of the database transactions:

1. **Hand on** (one transaction): every outbox event below the high-water mark becomes a
   pending delivery for each enabled endpoint that takes its type (`store.webhooks.fan_out`).
2. **Claim** (one transaction): take due deliveries, each the earliest pending one of its
   entity for its endpoint, under a lease long enough for the batch (`FOR UPDATE SKIP
   LOCKED`, so several relays share the work and never send the same delivery at once).
3. **Send** the claimed deliveries concurrently, then **record** every attempt and move each
   delivery on (one transaction): done, retried later on the Standard Webhooks schedule, or
   failed for good. A `410 Gone` disables the endpoint; so do five days of failures. Both
   record an `endpoint.disabled` event.

A relay that dies after sending and before recording leaves its deliveries leased; when the
lease ends another pass sends them again with the same `webhook-id`, which receivers dedupe
on. That is the at-least-once promise.

Relays wake when events commit (`LISTEN accrual_outbox`), and poll every `poll_interval`
seconds besides, which also brings retries that fall due.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import structlog
from prometheus_client import Counter, Histogram
from standardwebhooks.webhooks import Webhook

from accrual.domain import webhooks as rules
from accrual.domain.clock import Clock
from accrual.integrations.webhook_transport import Outgoing, Reply, WebhookTransport
from accrual.services import webhooks as endpoints
from accrual.services.unit_of_work import Actor
from accrual.store import webhooks as store
from accrual.store.database import BoundTransactions, Database, dumps_json

log = structlog.get_logger("accrual.relay")

ATTEMPTS = Counter("accrual_webhook_attempts_total", "Webhook delivery attempts.", ["outcome"])
LAG = Histogram(
    "accrual_webhook_lag_seconds",
    "From an event's occurrence to its first successful delivery.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600),
)
RESPONSE_EXCERPT = 2048
# For crash tests only: the relay exits right after sending, before recording the attempts.
CRASH_AFTER_SEND = "ACCRUAL_TEST_RELAY_CRASH_AFTER_SEND"


@dataclasses.dataclass(frozen=True)
class RelaySettings:
    batch_size: int = 200
    concurrency: int = 16
    timeout: float = 15.0  # seconds a receiver has to answer
    lease_margin: dt.timedelta = dt.timedelta(seconds=30)
    poll_interval: float = 1.0


def envelope(claimed: store.Claimed) -> bytes:
    """The request body: the event's type, when it happened, and the entity's state then."""
    return dumps_json(
        {"type": claimed.event_type, "timestamp": claimed.occurred_at.isoformat(), "data": claimed.payload}
    ).encode()


def sign(*, secrets: Sequence[str], msg_id: str, timestamp: dt.datetime, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per live secret, space-separated."""
    text = body.decode()
    return " ".join(Webhook(s).sign(msg_id, timestamp, text) for s in secrets)


class Relay:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        transport: WebhookTransport,
        settings: RelaySettings | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.transport = transport
        self.settings = settings or RelaySettings()
        self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="accrual-relay-send")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def hand_on(self) -> int:
        """Step 1: make deliveries of every event below the high-water mark."""
        with self.db.transaction() as conn:
            return store.fan_out(conn, now=self.clock.now())

    def deliver_batch(self) -> int:
        """Steps 2 and 3 for one batch; return how many deliveries were attempted."""
        now = self.clock.now()
        # Long enough for the whole batch with every receiver taking its full timeout.
        rounds = math.ceil(self.settings.batch_size / self.settings.concurrency)
        lease = dt.timedelta(seconds=self.settings.timeout * rounds) + self.settings.lease_margin
        with self.db.transaction() as conn:
            claimed = store.claim(conn, now=now, lease_until=now + lease, limit=self.settings.batch_size)
        if not claimed:
            return 0
        sent = list(self._pool.map(self._send, claimed))
        if os.environ.get(CRASH_AFTER_SEND):
            os._exit(87)
        self._record(sent)
        return len(claimed)

    def run_once(self, *, max_batches: int = 50) -> int:
        """Hand on, then deliver until nothing is due (or `max_batches`); return attempts made."""
        self.hand_on()
        total = 0
        for _ in range(max_batches):
            done = self.deliver_batch()
            total += done
            if done < self.settings.batch_size:
                break
        return total

    def _send(self, claimed: store.Claimed) -> tuple[store.Claimed, Outgoing, Reply, dt.datetime]:
        at = self.clock.now()
        body = envelope(claimed)
        msg_id = str(claimed.event_id)
        headers = {
            "content-type": "application/json",
            "user-agent": "Accrual-Webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": sign(secrets=claimed.secrets, msg_id=msg_id, timestamp=at, body=body),
        }
        request = Outgoing(
            url=claimed.url,
            headers=headers,
            body=body,
            timeout=self.settings.timeout,
            policy=rules.AddressPolicy.of(
                allow_insecure=claimed.allow_insecure, allowed_networks=claimed.allowed_networks
            ),
        )
        return claimed, request, self.transport.send(request), at

    def _record(self, sent: Sequence[tuple[store.Claimed, Outgoing, Reply, dt.datetime]]) -> None:
        now = self.clock.now()
        outcomes: list[store.Outcome] = []
        healthy: set[tuple[uuid.UUID, uuid.UUID]] = set()
        failing: set[tuple[uuid.UUID, uuid.UUID]] = set()
        gone: set[tuple[uuid.UUID, uuid.UUID]] = set()
        for claimed, request, reply, at in sent:
            key = (claimed.tenant_id, claimed.endpoint_id)
            attempt = claimed.attempts + 1
            if reply.succeeded:
                outcome, next_at = "succeeded", None
                healthy.add(key)
                if claimed.attempts == 0:
                    LAG.observe(max((now - claimed.occurred_at).total_seconds(), 0.0))
            elif reply.status_code == 410:
                outcome, next_at = "gone", None
                gone.add(key)
            else:
                outcome = "failed"
                failing.add(key)
                retry_after = rules.parse_retry_after(reply.headers.get("retry-after"), now=at)
                next_at = rules.next_attempt_at(
                    delivery_id=claimed.delivery_id, attempts=attempt, failed_at=at, retry_after=retry_after
                )
            ATTEMPTS.labels(outcome).inc()
            error = reply.error
            if error is None and not reply.succeeded:
                error = f"HTTP {reply.status_code}"
            outcomes.append(
                store.Outcome(
                    tenant_id=claimed.tenant_id,
                    delivery_id=claimed.delivery_id,
                    endpoint_id=claimed.endpoint_id,
                    event_id=claimed.event_id,
                    attempt=attempt,
                    attempted_at=at,
                    url=request.url,
                    request_headers=dict(request.headers),
                    status_code=reply.status_code,
                    response_body=reply.body[:RESPONSE_EXCERPT] if reply.body else None,
                    latency_ms=reply.latency_ms,
                    error=error,
                    outcome=outcome,
                    next_attempt_at=next_at,
                )
            )
        with self.db.transaction() as conn:
            store.record(conn, outcomes)
            store.mark_endpoint_health(
                conn, succeeded=sorted(healthy), failed=sorted(failing - healthy), now=now
            )
            too_long = store.failing_for_too_long(
                conn, keys=sorted(failing - healthy), since=now - rules.FAILING_LIMIT
            )
            for reason, keys in (("gone", sorted(gone)), ("failing", too_long)):
                for tenant_id, endpoint_id in keys:
                    endpoints.set_enabled(
                        BoundTransactions(conn),
                        tenant_id=tenant_id,
                        endpoint_id=endpoint_id,
                        enabled=False,
                        reason=reason,
                        actor=Actor.system("relay"),
                        now=now,
                    )
                    log.warning("webhook endpoint disabled", endpoint_id=str(endpoint_id), reason=reason)

    def next_wait(self) -> float:
        """Seconds until the earliest pending delivery falls due, at most the poll interval."""
        with self.db.transaction() as conn:
            due = store.next_attempt_due(conn)
        if due is None:
            return self.settings.poll_interval
        return min(max((due - self.clock.now()).total_seconds(), 0.0), self.settings.poll_interval)

    def run(self, stop: threading.Event) -> None:
        """Relay until `stop` is set, woken by commits of outbox events."""
        log.info("relay started", concurrency=self.settings.concurrency)
        listener = store.OutboxListener(self.db)
        try:
            while not stop.is_set():
                try:
                    attempted = self.run_once()
                    wait = 0.0 if attempted >= self.settings.batch_size else self.next_wait()
                except Exception:
                    log.exception("relay pass failed")
                    wait = self.settings.poll_interval
                if wait > 0:
                    listener.wait(wait)
        finally:
            listener.close()
            log.info("relay stopped")

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="accrual-relay", daemon=True)
        thread.start()
        return thread, stop
