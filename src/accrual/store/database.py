"""Connections and transactions.

A `Database` owns the engine. Services ask it for a transaction; an entry point that must
make a service's writes part of a larger transaction (an idempotent API request records its
response in the same commit as the effect) hands the service a `Database` bound to its open
connection instead, whose transactions are savepoints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa


class TransactionSource(Protocol):
    """Where a unit of work gets its transaction."""

    def transaction(self) -> contextlib.AbstractContextManager[sa.Connection]: ...


def _json_default(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def dumps_json(value: Any) -> str:
    """JSON for the database: floats are refused (money is exact), keys are sorted."""
    if _plain_json(value):
        fast = _encode_plain(value)
        if fast is not None:
            return fast.decode()
    return _dumps_slow(value)


def _dumps_slow(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# The exact text `json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
# writes for a document of strings, integers, booleans, nulls, lists, string-keyed objects,
# decimals and ids (decimals and ids as their `str`), several times faster. A test holds the
# two to the same bytes; the audit chain hashes this text.
_ENCODER = msgspec.json.Encoder(order="sorted")
_DECODER_PLAIN = msgspec.json.Decoder()
_SCALARS = (str, int, bool, type(None), decimal.Decimal, uuid.UUID)
_INSTANTS = (dt.datetime, dt.date)


def _encode_plain(value: Any) -> bytes | None:
    try:
        return _ENCODER.encode(value)
    except (UnicodeEncodeError, msgspec.EncodeError, TypeError):
        return None  # a lone surrogate, say: the standard library's spelling decides


def _plain_json(value: Any) -> bool:
    """Refuse floats (TypeError); True when `value` holds only what the fast encoder spells
    exactly as `json.dumps` does (no instants, which `_json_default` writes its own way)."""
    # Iterative, dispatching on the exact type first: this walks every stored document.
    plain = True
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is dict or kind is StoredJson:
            # Keys other than strings: the fast encoder refuses them (TypeError), and the
            # standard library writes them its way.
            pending.extend(item.values())
        elif kind is list or kind is tuple:
            pending.extend(item)
        elif isinstance(item, float):
            raise TypeError("floats are not stored: use Decimal or a decimal string")
        elif kind in _INSTANTS:
            plain = False
        elif isinstance(item, dict):
            pending.extend(item.values())
            plain = False
        elif isinstance(item, list | tuple):
            pending.extend(item)
            plain = False
        else:
            plain = False
    return plain


class StoredJson(dict[str, Any]):
    """A JSON object as the database hands it back, with its canonical text (sorted keys, no
    spaces, UTF-8 as is: what `dumps_json` writes and the audit chain hashes), so storing it
    and hashing it encode it no more. Made by `stored_json`; never changed after."""

    __slots__ = ("text",)

    def __init__(self, value: Mapping[str, Any], text: str) -> None:
        super().__init__(value)
        self.text = text


def stored_json(value: Mapping[str, Any]) -> StoredJson:
    """`value` as storing it would give it back (decimals, instants and ids become strings,
    tuples lists), with its canonical text; floats are refused."""
    if _plain_json(value):
        fast = _encode_plain(value)
        if fast is not None:
            # Decimals and ids are written as strings and keys sorted: the text is already
            # the canonical text of what it parses to.
            return StoredJson(_DECODER_PLAIN.decode(fast), fast.decode())
    parsed = loads_json(_dumps_slow(value))
    # Encoded again from what was parsed, so the text is the stored value's whatever the
    # original's keys were.
    return StoredJson(parsed, json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def _json_array(values: Sequence[Any]) -> str:
    """A JSON array of these documents, reusing the text of those that have one."""
    if not any(type(v) is StoredJson for v in values):
        return dumps_json(values)
    return "[" + ",".join(v.text if type(v) is StoredJson else dumps_json(v) for v in values) + "]"


def _element_type(column: sa.Column[Any], dialect: sa.Dialect) -> str:
    if isinstance(column.type, sa.String):
        return "text"  # whatever its collation: the column's own applies on insert
    return str(column.type.compile(dialect=dialect))


# Values whose equality means the same stored value (not so for decimals: 1 and 1.0 have
# different scales), which a column may send once for every row.
_CONSTANT_TYPES = (str, int, uuid.UUID, dt.datetime, type(None))


def _constant(values: Sequence[Any]) -> bool:
    first = values[0]
    kind = type(first)
    return kind in _CONSTANT_TYPES and all(type(v) is kind and v == first for v in values)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# How each kind of value is written inside a PostgreSQL array literal.
_ARRAY_ELEMENT: dict[type, Any] = {
    str: _quoted,
    uuid.UUID: str,
    int: str,
    dt.datetime: lambda v: _quoted(v.isoformat()) if v.utcoffset() is not None else None,
    decimal.Decimal: lambda v: str(v) if v.is_finite() else None,
    bytes: lambda v: _quoted("\\x" + v.hex()),
    type(None): lambda _: "NULL",
}


def array_param(values: Sequence[Any]) -> Any:
    """A list to bind as an array parameter (`cast(:p AS uuid[])`): as one array literal when
    its values allow it (see `_array_literal`), else the list itself for the driver to adapt."""
    literal = _array_literal(values)
    return list(values) if literal is None else literal


def _array_literal(values: Sequence[Any]) -> str | None:
    """`values` as one PostgreSQL array literal ('{"a","b",NULL}'), or None when one of them is
    not a plain string, id, integer, instant or finite decimal. Much faster than the driver's
    adaptation of a list, which dumps and escapes element by element in Python."""
    parts = []
    for value in values:
        write = _ARRAY_ELEMENT.get(type(value))
        text = None if write is None else write(value)
        if text is None:
            return None
        parts.append(text)
    return "{" + ",".join(parts) + "}"


def insert_rows(conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows in one statement: each column sent as one array (JSON columns as one
    JSON array), zipped back into rows by `ROWS FROM`; a column with one value for every row
    (a tenant, an instant) is sent once.

    The statement's text does not depend on how many rows there are, so it stays short and is
    parsed once however large the batch, and JSON documents cross as one string each column,
    with no array escaping. JSON is encoded by `dumps_json` (no floats).
    """
    if not rows:
        return
    names = list(rows[0])
    params: dict[str, Any] = {}
    sources, selected, aliases = [], [], []
    for i, name in enumerate(names):
        column = table.c[name]
        values = [row[name] for row in rows]
        if isinstance(column.type, sa.JSON):
            params[f"c{i}"] = _json_array(values)
            sources.append(f"jsonb_array_elements(cast(:c{i} AS jsonb))")
            selected.append(f"nullif(c{i}, 'null'::jsonb)")
        elif isinstance(column.type, sa.ARRAY):
            # Arrays of text cross as JSON arrays: unnest would flatten an array of arrays.
            params[f"c{i}"] = dumps_json([list(v) for v in values])
            sources.append(f"jsonb_array_elements(cast(:c{i} AS jsonb))")
            selected.append(f"ARRAY(SELECT jsonb_array_elements_text(c{i}))")
        elif len(values) > 1 and _constant(values) and (sources or i < len(names) - 1):
            # Sent once, not dumped once a row (at least one column stays an array).
            params[f"c{i}"] = values[0]
            selected.append(f"cast(:c{i} AS {_element_type(column, conn.dialect)})")
            continue
        else:
            literal = _array_literal(values)
            params[f"c{i}"] = values if literal is None else literal
            sources.append(f"unnest(cast(:c{i} AS {_element_type(column, conn.dialect)}[]))")
            selected.append(f"c{i}")
        aliases.append(f"c{i}")
    # Names come from the schema, never from input.
    statement = (
        f"INSERT INTO {table.name} ({', '.join(names)}) "  # noqa: S608
        f"SELECT {', '.join(selected)} FROM ROWS FROM ({', '.join(sources)}) AS r({', '.join(aliases)})"
    )
    conn.execute(sa.text(statement), params)


def plan_with_values(conn: sa.Connection) -> None:
    """Plan every statement of this transaction with its parameters' values, never with the
    generic plan of a statement the driver prepared.

    A batch looks rows up by a list of 1,000 ids; a generic plan knows neither the list (so it
    cannot hash it) nor, when statistics are stale, the table's size: it may scan the whole
    table comparing every row with every id (seconds a batch, growing with the table), where
    a plan made with the values reads 1,000 rows through the primary key."""
    conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))


# One decoder for every document: `json.loads(..., parse_float=...)` builds a new one per call,
# which cost more than decoding a small document.
_DECODER = json.JSONDecoder(parse_float=decimal.Decimal)


# The same result, several times faster; what it refuses (a lone surrogate's escape, which no
# database document holds, or text that is not JSON) goes to the standard library's decoder.
_FAST_DECODER = msgspec.json.Decoder(float_hook=decimal.Decimal)


def loads_json(text: str | bytes) -> Any:
    """JSON from the database: numbers with a fraction come back as exact `Decimal`s."""
    try:
        return _FAST_DECODER.decode(text)
    except msgspec.DecodeError:
        return _DECODER.decode(text if isinstance(text, str) else text.decode())


def normalize_url(url: str) -> str:
    """Return `url` with the psycopg 3 driver named, whatever PostgreSQL URL form was given."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.rsplit('@', maxsplit=1)[-1]}")


class Database:
    """The engine behind every unit of work."""

    def __init__(self, url: str, *, pool_size: int = 10, application_name: str = "accrual") -> None:
        self.url = normalize_url(url)
        self.application_name = application_name
        self.engine = sa.create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            json_serializer=dumps_json,
            json_deserializer=loads_json,
            # JIT compiling costs hundreds of milliseconds and pays off only for long analytical
            # scans; Accrual's statements are short, and batched reads over partitions look costly
            # enough to the planner to trigger it (800 ms instead of 5 for a usage read).
            connect_args={"options": "-c timezone=UTC -c jit=off", "application_name": application_name},
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """Open a connection in a transaction; commit on success, roll back on any error."""
        with self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sa.Connection]:
        """A read-only REPEATABLE READ transaction: every statement sees the same instant."""
        with self.engine.connect() as plain:
            conn = plain.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for reads or for callers that manage transactions themselves."""
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


class BoundTransactions:
    """Transactions as savepoints of an open connection's transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        with self.conn.begin_nested():
            yield self.conn
