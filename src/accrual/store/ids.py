"""Identifiers: time-ordered UUIDs (RFC 9562 version 7).

Ordering ids by creation keeps B-tree inserts local and lets cursor pagination follow
creation order with one key. The timestamp bits are technical metadata, not business time:
this is the one place outside an entry point allowed to read the wall clock, because an id
must be unique and ordered whatever a test clock says.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0

_COUNTER_BITS = 12
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1


def new_id() -> uuid.UUID:
    """Return a new UUIDv7, strictly greater than any returned before by this process."""
    global _last_ms, _counter  # noqa: PLW0603 - process-wide monotonic state by design
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same millisecond (or the clock stepped back): count up within the last one so
            # ids stay strictly increasing; borrow the next millisecond when the counter is full.
            ms = _last_ms
            _counter += 1
            if _counter > _COUNTER_MAX:
                ms += 1
                _counter = 0
        else:
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave headroom for counting up
        _last_ms = ms
        counter = _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)
