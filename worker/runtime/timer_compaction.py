"""Cancelled timers leave kombu's timer heap within a bounded number of insertions.

Under prefork, with time limits, the worker's main process schedules a timer per task on its
event loop (the soft time limit: `AsynPool._on_timeout_set`) and cancels it when the task ends
(`Entry.cancel`, which only marks the entry). The entry, its arguments and the scheduling tuple
stay in kombu's heap until the time comes, `TASK_SOFT_TIME_LIMIT` (300 s) later: about 0.4 KB a
task, rate x 300 s of them. In the memory soak (loop bridge, 200-360 tasks/s) the main process grew
110 -> 138 MB over its first 80,000 tasks, about 300 s of them, then stayed there to 200,000; with
this module it stayed at 95.1 MB over 100,000 (bench/soak_results.md). A higher rate or a longer
limit raised that level.

The fix, as other event loops do it (socketry/io-event #181): when the heap has doubled since it
last held only live entries, rebuild it from the live ones. kombu's timer never learns about a
cancellation (the entry marks itself), so the check sits where entries are added: O(1) amortized
per timer, and dead entries never number more than the live ones plus `COMPACT_AFTER`.
"""

from __future__ import annotations

import heapq
from typing import Any

from kombu.asynchronous.timer import Timer

from worker.runtime.kombu_fixes import patch

# Never rebuild a heap smaller than this: small heaps cost nothing.
COMPACT_AFTER = 1000
_NEXT = "_articles_compact_at"


def _compacting(original: Any) -> Any:
    def enter(self: Any, eta: float, priority: int, entry: Any, *args: Any) -> Any:
        result = original(self, eta, priority, entry, *args)
        queue: list[Any] = self._queue
        if len(queue) >= getattr(self, _NEXT, COMPACT_AFTER):
            live = [event for event in queue if not event.entry.canceled]
            heapq.heapify(live)
            # In place: `Timer.__iter__` holds the list itself, and re-reads its head each step.
            queue[:] = live
            setattr(self, _NEXT, max(COMPACT_AFTER, 2 * len(live)))
        return result

    return enter


def install() -> None:
    """Make kombu's `Timer` drop cancelled entries as it grows. Idempotent."""
    patch(Timer, "_enter", _compacting)
