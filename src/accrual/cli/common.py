"""What every command shares: the database, one-line errors, ids and instants, JSON and tables.

Errors are one line on stderr and a non-zero exit: 1 when the request could not be done,
2 for a command used wrongly (Typer's own), 3 when the database is unreachable or behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Literal, NoReturn, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from accrual.cli import serving
from accrual.cli.settings import Settings
from accrual.domain.errors import AccrualError
from accrual.services.unit_of_work import Actor
from accrual.store import migrate
from accrual.store.database import Database
from accrual.store.embedded import EmbeddedPostgres, EmbeddedServerFailed
from accrual.store.pagination import Page

out = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_DATABASE = 3


class SchemaBehind(RuntimeError):
    pass


def fail(message: str, *, code: int = EXIT_FAILED) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def cli_actor() -> Actor:
    try:
        return Actor.cli(getpass.getuser())
    except (KeyError, OSError):
        return Actor.cli("unknown")


@contextlib.contextmanager
def errors_as_messages() -> Iterator[None]:
    try:
        yield
    except AccrualError as exc:
        where = f" ({exc.field})" if exc.field else ""
        fail(f"{exc.detail}{where}")
    except (EmbeddedServerFailed, SchemaBehind) as exc:
        fail(str(exc), code=EXIT_DATABASE)
    except serving.ServerDidNotStart as exc:
        fail(str(exc))
    except sa.exc.OperationalError as exc:
        fail(f"cannot reach the database: {str(exc.orig).strip().splitlines()[0]}", code=EXIT_DATABASE)
    except ValueError as exc:
        fail(str(exc))


@contextlib.contextmanager
def open_database(settings: Settings, *, schema: Literal["migrate", "require", "any"]) -> Iterator[Database]:
    """The configured database, or an embedded one when no URL is set (always migrated: it is ours).

    `schema` says what to do about its schema: bring it up to date, require it to be, or leave it.
    """
    embedded: EmbeddedPostgres | None = None
    url = settings.database_url
    if url is None:
        embedded = EmbeddedPostgres(settings.data_dir / "pgdata")
        url = embedded.start()
        if schema == "require":
            schema = "migrate"
    db = Database(url, pool_size=settings.db_pool_size)
    try:
        if schema == "migrate":
            migrate.upgrade(db)
        elif schema == "require":
            current, head = migrate.current_revision(db), migrate.head_revision()
            if current != head:
                raise SchemaBehind(
                    f"the database schema is at {current or 'nothing'}, this code needs {head}: "
                    "run `accrual migrate`"
                )
        yield db
    finally:
        db.dispose()
        if embedded is not None:
            embedded.stop()


@contextlib.contextmanager
def command_database(*, schema: Literal["migrate", "require", "any"] = "require") -> Iterator[Database]:
    with errors_as_messages(), open_database(Settings(), schema=schema) as db:
        yield db


def parse_instant(value: str, *, option: str) -> dt.datetime:
    try:
        instant = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: {value!r} is not an RFC 3339 instant, e.g. 2026-01-01T00:00:00Z")
    if instant.tzinfo is None:
        fail(f"{option}: {value!r} has no UTC offset; add Z or +01:00")
    return instant.astimezone(dt.UTC)


def parse_uuid(value: str, *, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{what}: {value!r} is not an id")


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID | bytes):
        return value.hex() if isinstance(value, bytes) else str(value)
    raise TypeError(type(value).__name__)


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, default=_json_default, indent=2) + "\n")


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    # Ids are copied from here into the next command: never crop them to fit a narrow terminal.
    needed = Measurement.get(out, out.options.update_width(10_000), table).maximum
    Console(width=max(out.width, needed)).print(table)


T = TypeVar("T")


def all_pages(fetch: Callable[[str | None], Page[T]]) -> list[T]:
    """Every item of a paginated list, following cursors to the end."""
    items: list[T] = []
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
