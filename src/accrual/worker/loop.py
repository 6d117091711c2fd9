"""The worker: follows the real clock, running what falls due, and keeps house."""

from __future__ import annotations

import datetime as dt
import threading
import time

import structlog
from prometheus_client import Counter, Histogram

from accrual.domain.clock import Clock
from accrual.services import idempotency, test_clocks
from accrual.services.due_work import DueWorkRegistry
from accrual.services.usage import maintenance
from accrual.store.database import Database

TICKS = Counter("accrual_worker_ticks_total", "Worker ticks run.")
TICK_ERRORS = Counter("accrual_worker_tick_errors_total", "Worker ticks that failed.")
TICK_SECONDS = Histogram("accrual_worker_tick_seconds", "Time a worker tick took.")
DUE_ITEMS = Counter(
    "accrual_worker_due_items_total", "Items of due work run on the real clock.", ["provider"]
)

log = structlog.get_logger("accrual.worker")


class Worker:
    """Runs `tick()` every `interval` seconds until stopped."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        registry: DueWorkRegistry,
        interval: float = 1.0,
        idempotency_retention: dt.timedelta = dt.timedelta(hours=24),
    ) -> None:
        self.db = db
        self.clock = clock
        self.registry = registry
        self.interval = interval
        self.idempotency_retention = idempotency_retention
        self._last_prune: dt.datetime | None = None
        self._last_release: dt.datetime | None = None

    def tick(self) -> None:
        """Roll usage up; run everything due now on the real clock; now and then retry quarantined
        usage and create usage partitions ahead; prune old idempotency keys once an hour."""
        now = self.clock.now()
        maintenance.roll_up(self.db, now=now)
        for step in test_clocks.run_real_clock_due_work(self.db, registry=self.registry, now=now):
            DUE_ITEMS.labels(step.provider).inc(step.items)
        if self._last_release is None or now - self._last_release >= dt.timedelta(seconds=10):
            maintenance.release_and_prepare(self.db, now=now)
            self._last_release = now
        if self._last_prune is None or now - self._last_prune >= dt.timedelta(hours=1):
            pruned = idempotency.prune(self.db, older_than=now - self.idempotency_retention)
            if pruned:
                log.info("pruned idempotency keys", count=pruned)
            self._last_prune = now

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; a failed tick is logged and the next one tries again."""
        log.info("worker started", interval_s=self.interval)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                self.tick()
                TICKS.inc()
            except Exception:
                TICK_ERRORS.inc()
                log.exception("worker tick failed")
            TICK_SECONDS.observe(time.perf_counter() - started)
            stop.wait(self.interval)
        log.info("worker stopped")

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="accrual-worker", daemon=True)
        thread.start()
        return thread, stop
