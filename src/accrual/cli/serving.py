"""`accrual serve`: the API and the worker in one process, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import datetime as dt
import os

import structlog
import uvicorn
import uvicorn.supervisors
from rich.console import Console

from accrual.api.app import create_app
from accrual.api.asgi import settle_memory
from accrual.cli import logs
from accrual.cli.settings import Settings
from accrual.integrations.system_clock import SYSTEM_CLOCK
from accrual.services import tenants
from accrual.services.registry import default_registry
from accrual.services.unit_of_work import Actor
from accrual.store.database import Database
from accrual.worker.loop import Worker

log = structlog.get_logger("accrual.serve")


class ServerDidNotStart(Exception):
    pass


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
    worker_thread = stop = None
    if run_worker:
        worker = Worker(
            db,
            clock=SYSTEM_CLOCK,
            registry=registry,
            interval=settings.worker_interval_seconds,
            idempotency_retention=dt.timedelta(hours=settings.idempotency_retention_hours),
        )
        worker_thread, stop = worker.start_thread()
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
        if stop is not None and worker_thread is not None:
            stop.set()
            worker_thread.join(timeout=30)
        log.info("stopped")
    if not server.started:
        raise ServerDidNotStart(f"could not serve on {host}:{port} (is the port in use?)")
