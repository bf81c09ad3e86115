"""Test-only tasks for the RabbitMQ tests, loaded through EXTRA_TASK_MODULES.

`tests.retry_once` fails its first delivery with a countdown retry, so a test can see the retry
travel through RabbitMQ's delayed-delivery exchanges; `tests.sleep` holds its message (late ack)
for as long as it is told to.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task

from worker.runtime.app import app


@app.task(name="tests.retry_once", bind=True, max_retries=3)
def retry_once(self: Task[Any, Any], countdown: float) -> dict[str, Any]:
    """Retry once after `countdown` seconds, then report when each attempt ran."""
    if self.request.retries == 0:
        raise self.retry(countdown=countdown, queue="articles.process")
    return {"retries": self.request.retries, "finished_at": time.time()}


@app.task(name="tests.sleep")
def sleep(seconds: float) -> float:
    """Sleep, holding the (late-acked) message the whole time."""
    time.sleep(seconds)
    return seconds
