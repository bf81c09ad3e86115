"""The two tasks `python -m bench.async_task` compares: the same work, sync and `@async_task`.

Each run's cost, from Celery's `task_prerun` to its `task_postrun` (the task body plus Celery's
own state and result writes, alike for both), is logged in nanoseconds twice, wall time and the
worker process's CPU time (`time.process_time_ns`, every thread of the process, so the `loop`
bridge's own thread is counted). CPU time is what the machine's load does not inflate much: a
task that waits for a CPU is not charged for the wait. The process's context switches over the
same span are logged too. The worker's outcome lines round to
milliseconds, too coarse for the fraction of one this measures.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

from celery.signals import task_postrun, task_prerun

from worker import app, async_task

log = logging.getLogger("bench.tasks")
_began: dict[str, tuple[int, int, int]] = {}


@app.task(name="bench.sync_add")
def sync_add(x: int, y: int) -> int:
    return x + y


@async_task(name="bench.async_add")
async def async_add(x: int, y: int) -> int:
    return x + y


@task_prerun.connect
def _began_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is not None and str(getattr(task, "name", "")).startswith("bench."):
        _began[task_id] = (time.perf_counter_ns(), time.process_time_ns(), _switches())


@task_postrun.connect
def _ended_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    ended = (time.perf_counter_ns(), time.process_time_ns(), _switches())
    began = _began.pop(task_id or "", None)
    if began is not None:
        wall, cpu, switches = (end - start for end, start in zip(ended, began, strict=True))
        log.warning("bench-runtime %s %d %d %d", task.name, wall, cpu, switches)


def _switches() -> int:
    # Context switches of the whole process, its threads included: each bridge crossing wakes
    # the loop thread and is woken by it, and under load every switch costs CPU of its own.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw
