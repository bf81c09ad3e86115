"""kombu's timer with cancelled entries compacted (worker/runtime/timer_compaction.py)."""

from __future__ import annotations

import pytest
from kombu.asynchronous.timer import Timer

from worker.runtime import timer_compaction

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _installed() -> None:
    timer_compaction.install()


def test_cancelled_entries_do_not_pile_up() -> None:
    """As the worker's main process does per task: a long timer, cancelled by the entry itself
    (`AsynPool._discard_tref` calls `Entry.cancel`, never `Timer.cancel`)."""
    timer = Timer()
    fired: list[int] = []
    keep = [timer.call_after(1000 + i, fired.append, (i,)) for i in range(50)]
    for i in range(40_000):
        timer.call_after(300, fired.append, (i,)).cancel()
    assert len(timer) <= 2 * 50 + timer_compaction.COMPACT_AFTER
    live = [event.entry for event in timer._queue if not event.entry.canceled]
    assert sorted(id(e) for e in live) == sorted(id(e) for e in keep)


def test_the_heap_still_fires_in_order_after_a_rebuild() -> None:
    timer = Timer()
    fired: list[int] = []
    for i in range(3000):
        entry = timer.call_after(0, fired.append, (i,))
        if i % 3:
            entry.cancel()
    due = [i for i in range(3000) if i % 3 == 0]
    for _delay, entry in iter(timer):
        if entry is None:
            break
        timer.apply_entry(entry)
    assert sorted(fired) == due
