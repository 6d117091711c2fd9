"""The wall clock. Only entry points (api, cli, console, worker) may import this module."""

from __future__ import annotations

import datetime as dt


class SystemClock:
    """The real clock: tz-aware UTC instants from the operating system."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


SYSTEM_CLOCK = SystemClock()
