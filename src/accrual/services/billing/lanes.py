"""Lanes: processes that bill a run's batches, so composing invoices uses every core.

Composing is Python's work and holds the interpreter's lock, so batches billed by threads of
one process compose one at a time. A pipelined run (`due.BillingPointsDue`) hands its batches
to lane processes instead, each with its own connections, while a thread of the run relays
each batch's turn (`run.Turn`) over a pipe: the lane says when its batch holds its locks and
asks before it takes its numbers, so numbers follow the run's order across processes exactly
as they do across threads.

Lanes start on the first run that needs them (a second or so to import) and then wait for the
next run; they are daemons, ended with the process that started them. One run at a time uses
them: a run that finds them busy (another thread's run) bills its batches itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from multiprocessing.connection import Connection

import sqlalchemy as sa

from accrual.services.billing.run import Turn
from accrual.store.database import Database

# A batch: (tenant, instant, billing point ids).
Batch = tuple[uuid.UUID, dt.datetime, list[uuid.UUID]]

_SPAWN = multiprocessing.get_context("spawn")


class LaneDied(RuntimeError):
    """A lane process ended in the middle of a batch (its transaction rolled back)."""


class _RelayedTurn(Turn):
    """A batch's turn inside a lane: the run's thread holds the real one."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(after=None)
        self.conn = conn

    def mark_locked(self) -> None:
        self.conn.send(("locked",))

    def wait_to_start(self) -> None:
        """The run starts a batch in a lane only once it may start."""

    def wait_to_number(self) -> None:
        self.conn.send(("number",))
        self.conn.recv()

    def end(self) -> None:
        self.conn.send(("ended",))


def _serve(conn: Connection, url: str, application_name: str) -> None:
    """A lane's life: bill each batch the run sends, until the run's process goes."""
    from accrual.services.billing import due  # noqa: PLC0415 - due imports this module

    # A batch allocates hundreds of thousands of short-lived objects and keeps no cycles: what
    # was imported stays out of the collector's way, and it runs less often (as the server does).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    db = Database(url, pool_size=2, application_name=application_name)
    statements = 0

    def counted(*_: object) -> None:
        nonlocal statements
        statements += 1

    sa.event.listen(db.engine, "before_cursor_execute", counted)
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        try:
            due.bill_batch(db, batch, _RelayedTurn(conn))
        except Exception as error:  # reported to the run, which raises it
            conn.send(("failed", f"{type(error).__name__}: {error}"))
        else:
            conn.send(("done", statements))
        finally:
            # An idle lane holds no connection (the run's database may be dropped, as a
            # simulation's is).
            db.dispose()


class Lane:
    """One lane process and the run's end of its pipe."""

    def __init__(self, db: Database) -> None:
        self.conn, child = _SPAWN.Pipe()
        self.process = _SPAWN.Process(
            target=_serve,
            args=(child, db.url, db.application_name),
            name="accrual-billing-lane",
            daemon=True,
        )
        self.process.start()
        child.close()

    # Statements this lane's batches ran, for benchmarks (`statements`).
    statements = 0

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def bill(self, batch: Batch, turn: Turn) -> None:
        """Bill `batch` in this lane, relaying its turn; raise if it fails or the lane dies."""
        self.conn.send(batch)
        while True:
            try:
                kind, *rest = self.conn.recv()
            except (EOFError, OSError) as error:
                self.process.join(timeout=5)
                raise LaneDied(f"a billing lane ended (exit code {self.process.exitcode})") from error
            if kind == "locked":
                turn.mark_locked()
            elif kind == "number":
                turn.wait_to_number()
                self.conn.send(("go",))
            elif kind == "ended":
                turn.end()
            elif kind == "done":
                self.statements = rest[0]
                return
            else:
                raise RuntimeError(f"billing in a lane failed: {rest[0]}")

    def stop(self) -> None:
        self.conn.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()


_BUSY = threading.Lock()
_started: dict[str, list[Lane]] = {}


def shutdown() -> None:
    """Stop every lane of this process (the next run that needs lanes starts new ones)."""
    with _BUSY:
        for url in list(_started):
            for lane in _started.pop(url):
                lane.stop()


def statements(db: Database) -> int:
    """How many statements this process's lanes for `db`'s database have run in all."""
    return sum(lane.statements for lane in _started.get(db.url, []))


def started(db: Database) -> int:
    """How many lanes of this process are alive for `db`'s database."""
    return sum(lane.alive for lane in _started.get(db.url, []))


@contextlib.contextmanager
def borrowed(db: Database, count: int) -> Iterator[list[Lane] | None]:
    """`count` lanes for `db`'s database for the length of a run (started if need be), or
    None while another run of this process uses them."""
    if not _BUSY.acquire(blocking=False):
        yield None
        return
    try:
        for url in [u for u in _started if u != db.url]:
            for lane in _started.pop(url):
                lane.stop()
        lanes = []
        for lane in _started.get(db.url, []):
            if lane.alive:
                lanes.append(lane)
            else:
                lane.stop()
        lanes += [Lane(db) for _ in range(count - len(lanes))]
        _started[db.url] = lanes
        yield lanes
    finally:
        _BUSY.release()
