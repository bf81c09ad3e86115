"""The base class of every task on `worker.app`, a user's plain `@app.task` included.

It is the app's `task_cls`, so each task gets, without asking:
- retries of transient errors (database or broker unreachable, `TransientError`) with capped
  exponential backoff and full jitter until `TASK_RETRY_DEADLINE_SECONDS` after the job's first
  attempt, `TASK_MAX_RETRIES` being only a safety bound; any other error fails at once;
- the poison-job check: a job whose delivery killed its worker process `MAX_DELIVERIES` times is
  failed with `PoisonJob` instead of run.
Failures then reach the dead-letter store through `worker.runtime.deadletters.hooks`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from celery.utils.serialization import raise_with_context

from articles_client.errors import InvalidPayload, PoisonJob
from worker.runtime import retry_policy
from worker.runtime.deadletters import hooks
from worker.runtime.settings import get_settings

log = logging.getLogger(__name__)

# Passed by Celery's autoretry wrapper (through `retry_kwargs`), so `retry` knows the delay and
# the decision to retry are ours to make, not a caller's explicit `self.retry(countdown=...)`.
_AUTO = "_articles_autoretry"


class WorkerTask(Task[Any, Any]):
    """Deadline-based retries and the poison-job check for every task of the worker."""

    # Every error reaches `retry`, which retries only the transient ones.
    autoretry_for = (Exception,)
    dont_autoretry_for = (InvalidPayload,)
    retry_kwargs = {_AUTO: True}
    retry_backoff = False
    # None: TASK_MAX_RETRIES applies; a task's own `max_retries=` is respected.
    max_retries = None

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        deliveries = hooks.deliveries_of(task_id)
        limit = hooks.delivery_limit(task_id, get_settings().max_deliveries)
        if deliveries > limit:
            raise PoisonJob(
                f"this job's last {deliveries - 1} deliveries never finished, the worker "
                f"process died (limit {limit}: MAX_DELIVERIES, or on RabbitMQ without Redis the "
                "quorum queue's backstop): dead-lettered instead of run"
            )

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: Exception | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Retry until the deadline after the first attempt; past it, fail with `exc`."""
        automatic = bool(options.pop(_AUTO, False))
        request = self.request
        if request.called_directly:
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        if automatic and exc is not None and not retry_policy.is_retryable(exc):
            raise_with_context(exc)
        settings = get_settings()
        now = time.time()
        first = retry_policy.first_attempt_at(request, default=hooks.started_at(request, now))
        remaining = first + settings.task_retry_deadline_seconds - now
        if remaining <= 0:
            setattr(
                request,
                retry_policy.GAVE_UP_ATTR,
                f"retry deadline passed: {settings.task_retry_deadline_seconds:g} s after the "
                f"first attempt, {request.retries} retries",
            )
            raise_with_context(exc or RuntimeError("retry deadline passed"))
        if automatic:
            countdown = min(
                retry_policy.backoff(request.retries, settings.task_retry_backoff_max), remaining
            )
        if countdown is not None and 0 < countdown < 1:
            # RabbitMQ's native delayed delivery (quorum queues) routes by whole seconds and
            # refuses a delay that rounds to 0, which would reject a retryable job outright.
            countdown = 1.0
        if max_retries is None:
            own = self.max_retries
            max_retries = own if own is not None else settings.task_max_retries
        if request.retries >= max_retries:
            setattr(
                request,
                retry_policy.GAVE_UP_ATTR,
                f"TASK_MAX_RETRIES={max_retries} reached before the retry deadline",
            )
        headers = {**(options.pop("headers", None) or request.headers or {})}
        headers[retry_policy.FIRST_ATTEMPT_HEADER] = first
        return super().retry(
            args, kwargs, exc, throw, eta, countdown, max_retries, headers=headers, **options
        )
