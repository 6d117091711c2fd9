"""The app for process managers (`uvicorn --factory accrual.api.asgi:from_environment`, several workers).

Each worker process builds its own app over `ACCRUAL_DATABASE_URL`; the worker loop runs once,
in the process that manages them (`accrual serve --workers N`).
"""

from __future__ import annotations

import gc
import os

from fastapi import FastAPI

from accrual.api.app import create_app
from accrual.store.database import Database


def from_environment() -> FastAPI:
    url = os.environ.get("ACCRUAL_DATABASE_URL")
    if not url:
        raise RuntimeError("ACCRUAL_DATABASE_URL must be set for a multi-process server")
    pool = int(os.environ.get("ACCRUAL_DB_POOL_SIZE", "10"))
    app = create_app(Database(url, pool_size=pool))
    settle_memory()
    return app


def settle_memory() -> None:
    """Tune the garbage collector for a server, once its long-lived objects exist.

    Those objects (modules, the app, caches) move out of the collector's way, and the youngest
    generation is collected less often: a batch of usage events allocates many short-lived
    objects, and a collection every 700 of them cost about a tenth of ingestion's time.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
