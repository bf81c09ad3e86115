"""Recording that a task started is best effort: an unreachable result store must not cost the job.

With `task_track_started` Celery stores a task's STARTED state before its body runs. When the
result store (usually the broker's own Redis) is restarting, that store fails after its retries
with `BackendStoreError`; Celery then fails the task without running it, acknowledges the message,
and the job is lost (found by the Redis-restart reliability test). STARTED is informational, so a
failure to store it is logged and the task runs; the states stored after the body (SUCCESS,
FAILURE, RETRY) keep Celery's behaviour.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import states
from celery.backends.base import Backend
from celery.exceptions import BackendStoreError

from worker.runtime.kombu_fixes import patch

log = logging.getLogger(__name__)


def _started_best_effort(original: Any) -> Any:
    def store_result(
        self: Any, task_id: str, result: Any, state: str, *args: Any, **kw: Any
    ) -> Any:
        try:
            return original(self, task_id, result, state, *args, **kw)
        except BackendStoreError as exc:
            if state != states.STARTED:
                raise
            log.warning("could not record that task %s started; it runs anyway (%r)", task_id, exc)
            return result

    return store_result


def install() -> None:
    """Make storing the STARTED state best effort. Idempotent."""
    patch(Backend, "store_result", _started_best_effort)
