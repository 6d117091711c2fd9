"""Named crash points in the billing run, for the crash tests.

`reach("numbered")` does nothing unless the process was started with
`ACCRUAL_CRASH_AT=numbered`, in which case the process dies there and then (`os._exit`: no
cleanup, no rollback message, no flushing), exactly as a killed worker would. The tests
start a child process that way, then run billing again and compare the invoices with an
uninterrupted run's. The points:

- `composed`: the invoice's lines are computed, nothing written yet;
- `lines_written`: the draft and its lines are written, not finalized;
- `numbered`: the invoice took its number, the transaction has not committed;
- `committed`: the invoice's transaction committed, the next point not started (its outbox
  events wait for the relay).
"""

from __future__ import annotations

import os

POINTS = ("composed", "lines_written", "numbered", "committed")
CRASH_EXIT_CODE = 86


def reach(point: str) -> None:
    """Die here if this process was told to (see the module's doc); otherwise do nothing."""
    if os.environ.get("ACCRUAL_CRASH_AT") == point:
        os._exit(CRASH_EXIT_CODE)
