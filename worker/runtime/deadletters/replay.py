"""Send a dead letter back to the broker, keeping its task id, queue and own headers.

The task id is kept so that idempotency keys still hold (docs/design.md section 3). What made
the job die is not carried over: the retry count starts again, the retry deadline is measured
from the replay, and the delivery counter is gone (the task ended before it was dead-lettered).
"""

from __future__ import annotations

import base64
from typing import Any

from celery import Celery

from articles_client.errors import ArticlesError
from worker.runtime import retry_policy
from worker.runtime.deadletters.entry import queue_of
from worker.runtime.deadletters.store import Entry

# Celery's own protocol headers: rebuilt by `send_task`, never copied from an old message.
_PROTOCOL_HEADERS = frozenset(
    {
        "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
        "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
        "replaced_task_nesting", "stamped_headers", "stamps", "content_type", "content_encoding",
        retry_policy.FIRST_ATTEMPT_HEADER,
    }
)  # fmt: skip
# Publishing is retried briefly: a replay that cannot reach the broker fails, keeping its entry.
_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


class NotReplayable(ArticlesError):
    """This dead letter cannot be sent back as it was received."""


def replay(app: Celery, entry: Entry) -> None:
    """Publish `entry` as a job again; returns once the broker has the message."""
    if entry.get("truncated"):
        raise NotReplayable(
            f"{entry['task_id']}: its arguments were cut to fit DEAD_LETTER_MAX_ENTRY_BYTES"
        )
    if "raw_body" in entry:
        _publish_raw(app, entry)
        return
    if not entry.get("task") or entry.get("args") is None or entry.get("kwargs") is None:
        raise NotReplayable(f"{entry['task_id']}: no task name or arguments to send")
    headers = {k: v for k, v in (entry.get("headers") or {}).items() if k not in _PROTOCOL_HEADERS}
    options: dict[str, Any] = {"headers": headers} if headers else {}
    queue = queue_of(entry.get("queue"))  # entries written before the prefix was dropped
    if queue:
        options["queue"] = queue
    app.send_task(
        entry["task"],
        args=entry["args"],
        kwargs=entry["kwargs"],
        task_id=entry["task_id"],
        retry=True,
        retry_policy=_PUBLISH_RETRY,
        **options,
    )


def _publish_raw(app: Celery, entry: Entry) -> None:
    # A message that could not be decoded goes back byte for byte, with its original headers:
    # worth it only once the worker can read it (say, the unknown task is now deployed).
    headers = dict(entry.get("headers") or {})
    content_type = headers.pop("content_type", None) or "application/json"
    content_encoding = headers.pop("content_encoding", None) or "utf-8"
    headers.pop(retry_policy.FIRST_ATTEMPT_HEADER, None)
    queue = queue_of(entry.get("queue")) or app.conf.task_default_queue
    with app.producer_or_acquire() as producer:
        producer.publish(
            base64.b64decode(entry["raw_body"]),
            routing_key=queue,
            exchange="",
            headers=headers,
            content_type=content_type,
            content_encoding=content_encoding,
            retry=True,
            retry_policy=_PUBLISH_RETRY,
        )
