"""`accrual serve`: the API, the worker and the webhook relay in one process, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
from collections.abc import Callable

import structlog
import uvicorn
import uvicorn.supervisors
from rich.console import Console

from accrual.api.app import create_app
from accrual.api.asgi import settle_memory
from accrual.cli import logs
from accrual.cli.settings import Settings
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.integrations.webhook_transport import HttpTransport
from accrual.services import tenants
from accrual.services.due_work import DueWorkRegistry
from accrual.services.registry import default_registry
from accrual.services.relay import Relay, RelaySettings
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database
from accrual.worker.loop import Worker

log = structlog.get_logger("accrual.serve")


class ServerDidNotStart(Exception):
    pass


def build_relay(db: Database, settings: Settings) -> tuple[Relay, HttpTransport]:
    transport = HttpTransport(connections_per_host=settings.relay_concurrency)
    relay = Relay(
        db,
        clock=SYSTEM_CLOCK,
        transport=transport,
        settings=RelaySettings(
            timeout=settings.webhook_timeout_seconds, concurrency=settings.relay_concurrency
        ),
    )
    return relay, transport


@dataclasses.dataclass
class _Background:
    """The worker and the webhook relay, each on its own thread."""

    threads: list[tuple[threading.Thread, threading.Event]]
    closers: list[Callable[[], None]]

    def stop(self) -> None:
        for _, stop in self.threads:
            stop.set()
        for thread, _ in self.threads:
            thread.join(timeout=30)
        for close in self.closers:
            close()


def _start_background(db: Database, settings: Settings, registry: DueWorkRegistry) -> _Background:
    worker = Worker(
        db,
        clock=SYSTEM_CLOCK,
        registry=registry,
        interval=settings.worker_interval_seconds,
        idempotency_retention=dt.timedelta(hours=settings.idempotency_retention_hours),
    )
    relay, transport = build_relay(db, settings)
    return _Background([worker.start_thread(), relay.start_thread()], [relay.close, transport.close])


def serve(
    db: Database,
    settings: Settings,
    *,
    host: str,
    port: int,
    run_worker: bool,
    out: Console,
    workers: int = 1,
) -> None:
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    created = tenants.ensure_demo_tenant(db, actor=Actor.system("serve"), now=SYSTEM_CLOCK.now())
    if created is not None:
        # Plain lines, not a box: the key and the curl line must survive copy and paste whole.
        out.print(
            f"[bold]First run:[/] created tenant {created.tenant.name} ({created.tenant.tenant_id}).\n"
            "Its admin API key, shown this once; store it now:\n\n"
            f"    [bold]{created.admin_key.secret}[/]\n\n"
            f'Try: curl -H "Authorization: Bearer {created.admin_key.secret}" http://{host}:{port}/v1/tenant\n',
            soft_wrap=True,
            highlight=False,
        )
    registry = default_registry()
    app = create_app(db, clock=SYSTEM_CLOCK, registry=registry)
    background = _start_background(db, settings, registry) if run_worker else None
    if workers > 1:
        # Each process builds its own app from the environment; this one runs the worker loop.
        os.environ["ACCRUAL_DATABASE_URL"] = db.url.replace("postgresql+psycopg://", "postgresql://", 1)
        config = uvicorn.Config(
            "accrual.api.asgi:from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=settings.log_level,
            access_log=False,
        )
    else:
        config = uvicorn.Config(
            app, host=host, port=port, log_level=settings.log_level, access_log=False, lifespan="on"
        )
        settle_memory()
    server = uvicorn.Server(config)
    out.print(
        f"Accrual serving on http://{host}:{port} (API docs at /docs); Ctrl-C stops it", highlight=False
    )
    try:
        # uvicorn handles SIGINT and SIGTERM: it stops accepting, finishes requests in flight, then
        # re-raises the signal; a Ctrl-C that asked for the stop is not an error.
        if workers > 1:
            sock = config.bind_socket()
            uvicorn.supervisors.Multiprocess(config, sockets=[sock]).run()
            server.started = True
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    except SystemExit:
        # uvicorn exits the process when it cannot bind; say why in our own words below.
        if server.started:
            raise
    finally:
        if background is not None:
            background.stop()
        log.info("stopped")
    if not server.started:
        raise ServerDidNotStart(f"could not serve on {host}:{port} (is the port in use?)")
