"""Task signals that count deliveries and dead-letter every job that ends in failure.

Signals, not a base class, so that they see every task the worker runs, whatever its base:

- `task_prerun` counts a delivery in the store's counter before any work, and notes the time;
- `task_postrun` drops the counter: the task ended normally (success, failure or retry), so only
  a crash (the process died mid-task) leaves it raised for the next delivery to see;
- on Redis and RabbitMQ, a message's first delivery is not stored: both brokers flag a message
  they deliver again (`delivery_info["redelivered"]`), so a delivery without the flag has no
  earlier crash to count. The healthy path then costs no round trip to the store (two before:
  about 13% of an empty task's throughput). A first delivery that was handed back unstarted
  (prefetched at a restart) is still taken as started, so such a job is capped one crash early;
- `task_failure` writes the dead letter: bad input, an unexpected error, retries given up (past
  the deadline or the safety bound), a poison job, a hard time limit (sent by the main process).

Loaded by workers through `include` in celeryconfig.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import task_failure, task_postrun, task_prerun

from articles_client.errors import InvalidPayload, PoisonJob
from articles_client.queues import is_amqp
from worker.runtime import retry_policy
from worker.runtime.deadletters import entry as entries
from worker.runtime.deadletters.factory import current_counter, current_store
from worker.runtime.deadletters.store import Entry

log = logging.getLogger(__name__)

_STARTED_ATTR = "articles_started_at"
# RabbitMQ's quorum queues add this header to a message they deliver again.
QUORUM_COUNT_HEADER = "x-delivery-count"
# With no counter in a store (RabbitMQ with database results), the quorum queue's count stands
# in. It counts every return, deploys and prefetched messages included, not only crashes: a
# generous backstop, never below MAX_DELIVERIES, so restarts do not dead-letter a healthy job.
QUORUM_DELIVERY_LIMIT = 10
_quorum_counted: set[str] = set()
# Delivery counts of the tasks running in this process, by task id (read by `before_start`).
_counts: dict[str, int] = {}
# The task ids among them whose count is in the store, to be dropped when they end.
_stored: set[str] = set()


def deliveries_of(task_id: str) -> int:
    """This delivery's number, as counted when the task started (0 if it could not be)."""
    return _counts.get(task_id, 0)


def delivery_limit(task_id: str, max_deliveries: int) -> int:
    """The deliveries allowed before the job counts as poison: MAX_DELIVERIES for a count of
    crashes, a generous backstop for a quorum queue's count of every return."""
    if task_id in _quorum_counted:
        return max(max_deliveries, QUORUM_DELIVERY_LIMIT)
    return max_deliveries


def _quorum_deliveries(task: Any) -> int:
    # The header counts earlier deliveries; the classic `celery` queue sends none (count 1).
    request = getattr(task, "request", None)
    return int(getattr(request, QUORUM_COUNT_HEADER, None) or 0) + 1


def _flagging_broker(task: Any) -> bool:
    """True when the task's broker flags redeliveries: RabbitMQ natively, kombu's Redis transport
    on every restore (visibility timeout, reject with requeue, a closed channel). kombu's
    SQLAlchemy transport (the embedded default) does not: there every delivery is stored."""
    url = getattr(getattr(task, "app", None), "conf", {}).get("broker_url")
    return isinstance(url, str) and (is_amqp(url) or url.startswith(("redis://", "rediss://")))


def _first_not_stored(task: Any) -> int:
    """What the store's count lacks: on a flagging broker it holds only the redeliveries that
    started, and the first delivery is the one more."""
    return 1 if _flagging_broker(task) else 0


def _redelivered(task: Any) -> bool:
    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    return bool(info.get("redelivered"))


def started_at(request: Any, default: float) -> float:
    """When this attempt started (noted by `task_prerun`)."""
    value = getattr(request, _STARTED_ATTR, None)
    return float(value) if value is not None else default


@task_prerun.connect
def _count_delivery(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None:
        return
    if task is not None and task.request.id == task_id:
        setattr(task.request, _STARTED_ATTR, time.time())
    try:
        counter = current_counter()
        if counter is None:
            _counts[task_id] = _quorum_deliveries(task)
            _quorum_counted.add(task_id)
        elif _flagging_broker(task) and not _redelivered(task):
            _counts[task_id] = 1  # nothing earlier to count, nothing stored
        else:
            _counts[task_id] = counter.delivered(task_id) + _first_not_stored(task)
            _stored.add(task_id)
    except Exception as exc:
        # A store that cannot be reached must not stop the work; only the crash cap is lost.
        log.warning("could not count this delivery: %s: %s", type(exc).__name__, exc)
        _counts[task_id] = 0


@task_postrun.connect
def _forget_delivery(task_id: str | None = None, **_: Any) -> None:
    _quorum_counted.discard(task_id or "")
    if task_id is None or _counts.pop(task_id, None) is None or task_id not in _stored:
        return
    _stored.discard(task_id)
    try:
        counter = current_counter()
        if counter is not None:
            counter.forget(task_id)
    except Exception as exc:
        log.warning("could not clear the delivery count: %s: %s", type(exc).__name__, exc)


@task_failure.connect
def _dead_letter(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    if task_id is None or exception is None:
        return
    request = getattr(sender, "request", None)
    if request is None or getattr(request, "id", None) != task_id:
        request = None  # reported outside the job's context (the main process, hard limit)
    # Counted here when the task ran in this process; a failure the main process reports
    # (hard time limit, lost worker) finds the count the killed child left, and drops it.
    ran_here = task_id in _counts
    try:
        counter = current_counter()
        if ran_here or counter is None:
            deliveries = deliveries_of(task_id)
        else:
            deliveries = counter.deliveries(task_id) + _first_not_stored(sender)
        entry = _entry(sender, task_id, exception, args, kwargs, request, deliveries)
        current_store().add(entry)
        if not ran_here and counter is not None:
            counter.forget(task_id)
    except Exception as exc:
        log.error(
            "could not dead-letter %s[%s] (%s: %s): its failure is only in the result backend",
            getattr(sender, "name", "?"),
            task_id,
            type(exc).__name__,
            exc,
        )
        return
    log.warning("Task %s[%s] dead-lettered: %s", entry["task"], task_id, entry["reason"])


def _entry(
    sender: Any,
    task_id: str,
    exc: BaseException,
    args: Any,
    kwargs: Any,
    request: Any,
    deliveries: int,
) -> Entry:
    now = time.time()
    retries = int(getattr(request, "retries", 0) or 0)
    first = retry_policy.first_attempt_at(request, default=now) if retries else now
    headers = dict(getattr(request, "headers", None) or {})
    headers.pop(retry_policy.FIRST_ATTEMPT_HEADER, None)
    delivery_info = getattr(request, "delivery_info", None) or {}
    return entries.make_entry(
        task_id=task_id,
        task=getattr(sender, "name", None),
        args=args if args is not None else [],
        kwargs=kwargs if kwargs is not None else {},
        error_type=type(exc).__name__,
        error_message=str(exc),
        reason=_reason(exc, request),
        now=now,
        deliveries=max(deliveries, 1),
        first_failed_at=first,
        queue=delivery_info.get("routing_key") or None,
        headers=headers,
        retries=retries,
    )


def _reason(exc: BaseException, request: Any) -> str:
    gave_up = getattr(request, retry_policy.GAVE_UP_ATTR, None)
    if gave_up:
        return str(gave_up)
    if isinstance(exc, PoisonJob):
        return "poison job: its delivery killed the worker process too often"
    if isinstance(exc, InvalidPayload):
        return "invalid payload"
    if type(exc).__name__ == "TimeLimitExceeded":
        return "hard time limit exceeded: the process running it was killed"
    return "failed"
