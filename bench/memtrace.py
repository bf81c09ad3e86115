"""Where a worker's main process grows: loaded into the soak's worker (`SOAK_TRACEMALLOC=1`).

The main process starts tracemalloc at `worker_init` and, on SIGUSR2, writes the allocation sites
that grew most since its first snapshot to `<SOAK_TRACEMALLOC_DIR>/main-<pid>.txt` (the soak
sends the signal after each round). Pool children are not traced: `worker_max_tasks_per_child`
bounds them, but nothing recycles the main process.
"""

from __future__ import annotations

import linecache
import os
import signal
import tracemalloc
from pathlib import Path
from typing import Any

from celery.signals import worker_init

TOP = 25
_first: list[tracemalloc.Snapshot] = []


def _dump(_signum: int, _frame: Any) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        # Not this tool's own: formatting tracebacks fills linecache.
        [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, linecache.__file__),
        ]
    )
    if not _first:
        _first.append(snapshot)
    stats = snapshot.compare_to(_first[0], "traceback")[:TOP]
    out = Path(os.environ.get("SOAK_TRACEMALLOC_DIR", ".")) / f"main-{os.getpid()}.txt"
    with out.open("a") as f:
        traced, peak = tracemalloc.get_traced_memory()
        f.write(f"== traced {traced / 1e6:.1f} MB (peak {peak / 1e6:.1f} MB)\n")
        for stat in stats:
            f.write(f"{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks\n")
            f.write("".join(f"    {line}\n" for line in stat.traceback.format(limit=6)))


@worker_init.connect
def _start(**_: Any) -> None:
    if os.environ.get("SOAK_TRACEMALLOC"):
        tracemalloc.start(6)
        signal.signal(signal.SIGUSR2, _dump)
