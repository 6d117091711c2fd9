"""A small, thread-safe, bounded cache for facts that never change once written.

Only immutable rows may be cached here (published plan versions, a customer's external id):
PostgreSQL refuses to change them, and their ids are globally unique UUIDv7s, so an entry can
never go stale whatever database or tenant it came from.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class FactCache(Generic[K, V]):
    """Least-recently-used eviction beyond `size` entries."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
