"""The two tasks `python -m bench.async_task` compares: the same work, sync and `@async_task`.

Each run's time, from Celery's `task_prerun` to its `task_postrun` (the task body plus Celery's
own state and result writes, alike for both), is logged in microseconds: the worker's outcome
lines round to milliseconds, too coarse for the fraction of one this measures.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import task_postrun, task_prerun

from worker import app, async_task

log = logging.getLogger("bench.tasks")
_began: dict[str, int] = {}


@app.task(name="bench.sync_add")
def sync_add(x: int, y: int) -> int:
    return x + y


@async_task(name="bench.async_add")
async def async_add(x: int, y: int) -> int:
    return x + y


@task_prerun.connect
def _began_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is not None and str(getattr(task, "name", "")).startswith("bench."):
        _began[task_id] = time.perf_counter_ns()


@task_postrun.connect
def _ended_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    began = _began.pop(task_id or "", None)
    if began is not None:
        micros = (time.perf_counter_ns() - began) // 1000
        log.warning("bench-runtime %s %d", task.name, micros)
