"""Messages that are not a runnable job (pickle, invalid UTF-8, an unknown task name, no task
header at all) go to the dead-letter store with their raw body and headers.

Celery's consumer logs such a message and acks or rejects it: it would be gone. This subclass
(the worker's `worker_consumer`) writes the dead letter first, then lets Celery do exactly what
it did before, so the worker keeps running and the jobs around it are unaffected. The body is
never decoded beyond JSON: a pickle stays bytes.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from celery.exceptions import NotRegistered
from celery.worker.consumer import Consumer

from worker.runtime import retry_policy
from worker.runtime.deadletters import entry as entries
from worker.runtime.deadletters.factory import current_store
from worker.runtime.deadletters.store import Entry

log = logging.getLogger(__name__)


class DeadLetteringConsumer(Consumer):
    """Celery's consumer, with every refused message kept in the dead-letter store."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        _dead_letter(message, exc, "undecodable message body")
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        _dead_letter(message, None, "not a task message (no task header)")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        # Celery hands over the KeyError of its lookup; the task's client sees NotRegistered.
        name = (message.headers or {}).get("task") if isinstance(message.headers, dict) else None
        _dead_letter(message, NotRegistered(repr(name)), "unknown task name", decode=True)
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        _dead_letter(message, exc, "refused message (content type or format)")
        super().on_invalid_task(body, message, exc)


def _dead_letter(message: Any, exc: Exception | None, reason: str, decode: bool = False) -> None:
    try:
        entry = _entry(message, exc, reason, decode)
        current_store().add(entry)
    except Exception as error:
        log.error(
            "could not dead-letter a refused message (%s: %s); it is dropped",
            type(error).__name__,
            error,
        )
        return
    log.warning("refused message %s[%s] dead-lettered: %s", entry["task"], entry["task_id"], reason)


def _entry(message: Any, exc: Exception | None, reason: str, decode: bool) -> Entry:
    headers = dict(message.headers or {}) if isinstance(message.headers, dict) else {}
    headers.pop(retry_policy.FIRST_ATTEMPT_HEADER, None)
    body = message.body
    raw = body if isinstance(body, bytes) else str(body).encode("utf-8", "surrogateescape")
    arguments = _json_arguments(raw, message.content_type) if decode else None
    delivery_info = message.delivery_info or {}
    headers["content_type"] = message.content_type
    headers["content_encoding"] = message.content_encoding
    return entries.make_entry(
        task_id=str(headers.get("id") or f"refused-{uuid.uuid4()}"),
        task=str(headers["task"]) if headers.get("task") else None,
        args=arguments[0] if arguments else None,
        kwargs=arguments[1] if arguments else None,
        raw_body=None if arguments else raw,
        error_type=type(exc).__name__ if exc is not None else "UnknownMessage",
        error_message=str(exc) if exc is not None else "the message has no task header",
        reason=reason,
        now=time.time(),
        queue=delivery_info.get("routing_key") or None,
        headers=headers,
    )


def _json_arguments(
    raw: bytes, content_type: str | None
) -> tuple[list[Any], dict[str, Any]] | None:
    # Protocol 2 JSON body: [args, kwargs, embed]. Anything else stays raw.
    if content_type != "application/json":
        return None
    try:
        decoded = json.loads(raw.decode("utf-8"))
        args, kwargs = decoded[0], decoded[1]
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    if isinstance(args, list) and isinstance(kwargs, dict):
        return args, kwargs
    return None
