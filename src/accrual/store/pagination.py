"""Cursor pagination over a unique, ordered key.

A cursor is the opaque, URL-safe encoding of the last key a page returned. Pages follow the
key's order, so inserts between requests never shift or repeat items.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from accrual.domain.errors import InvalidInput

T = TypeVar("T")

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


class InvalidCursor(InvalidInput):
    title = "Invalid cursor"


@dataclasses.dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def encode_cursor(key: Any) -> str:
    raw = json.dumps({"k": str(key) if isinstance(key, uuid.UUID) else key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))["k"]
    except (ValueError, KeyError, TypeError):
        raise InvalidCursor("cursor is not one this API returned", field="cursor") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def fetch_page(
    conn: sa.Connection,
    query: sa.Select[Any],
    key: sa.ColumnElement[Any],
    *,
    cursor: str | None,
    limit: int,
    descending: bool,
    to_item: Callable[[sa.Row[Any]], T],
    key_of: Callable[[T], Any],
    parse_key: Callable[[Any], Any] = lambda k: k,
) -> Page[T]:
    """Run `query` for one page after `cursor`, ordered by `key`."""
    check_limit(limit)
    if cursor is not None:
        try:
            after = parse_key(decode_cursor(cursor))
        except (ValueError, TypeError):
            raise InvalidCursor("cursor is not one this API returned", field="cursor") from None
        query = query.where(key < after if descending else key > after)
    query = query.order_by(key.desc() if descending else key.asc()).limit(limit + 1)
    rows: Sequence[sa.Row[Any]] = conn.execute(query).all()
    items = [to_item(row) for row in rows[:limit]]
    next_cursor = encode_cursor(key_of(items[-1])) if len(rows) > limit and items else None
    return Page(items=items, next_cursor=next_cursor)
