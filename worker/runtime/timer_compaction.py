"""Cancelled timers leave kombu's timer heap at once, not when they would have fired.

Under prefork, with time limits, the worker's main process schedules two timers per task on its
event loop (the soft and the hard limit: `AsynPool._on_timeout_set`) and cancels them when the
task ends. kombu's `Timer.cancel` only marks an entry; the entry, and the job it references, stay
in the heap until their time comes, `TASK_TIME_LIMIT` (360 s) later. So the main process held
about rate x 360 x 2 dead entries: in the memory soak it grew 110 -> 138 MB over its first 80,000
`process_article` tasks (275 tasks/s) before levelling off, and tracemalloc put the growth in
`Timer.enter_after` under `asynpool._on_timeout_set`. A higher rate or a longer limit raises
that level.

The fix, as event loops elsewhere do it (socketry/io-event #181): count cancellations, and once
they are at least half of the heap, rebuild the heap from the live entries. Cancelling stays O(1)
amortized, and dead entries never outnumber live ones (plus a floor of `COMPACT_AFTER`).
"""

from __future__ import annotations

import heapq
from typing import Any

from kombu.asynchronous.timer import Timer

from worker.runtime.kombu_fixes import patch

# Below this many cancellations since the last rebuild, never rebuild: small heaps cost nothing.
COMPACT_AFTER = 1000
_CANCELLED = "_articles_cancelled"


def _compacting(original: Any) -> Any:
    def cancel(self: Any, tref: Any) -> None:
        original(self, tref)
        cancelled = getattr(self, _CANCELLED, 0) + 1
        queue: list[Any] = self._queue
        if cancelled >= COMPACT_AFTER and 2 * cancelled >= len(queue):
            live = [event for event in queue if not event.entry.canceled]
            heapq.heapify(live)
            # In place: `Timer.__iter__` holds the list itself, and re-reads its head each step.
            queue[:] = live
            cancelled = 0
        setattr(self, _CANCELLED, cancelled)

    return cancel


def install() -> None:
    """Make `Timer.cancel` rebuild the heap when cancelled entries reach half of it. Idempotent."""
    patch(Timer, "cancel", _compacting)
