"""`LOG_FORMAT=json`: one JSON object per log line, for the worker, beat and the `articles` command.

Each object has `time` (UTC, ISO 8601), `level`, `logger` and `message`; inside a task also
`task_name` and `task_id`; `trace_id` when an OpenTelemetry span is current; `exc_info` for a
traceback; and any `extra` fields the caller passed (Celery passes some). Text stays the default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

try:  # the `otel` extra; without it there is never a trace id
    from opentelemetry import trace as _trace

    _HAVE_OTEL = True
except ImportError:  # pragma: no cover - depends on the installed extras
    _HAVE_OTEL = False

CurrentTask = Callable[[], "tuple[str, str] | None"]


def _no_task() -> tuple[str, str] | None:
    return None


def trace_id() -> str | None:
    """The current OpenTelemetry trace id as 32 hex digits, or None."""
    if not _HAVE_OTEL:
        return None
    context = _trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter with this project's field names and task context."""

    def __init__(self, current_task: CurrentTask = _no_task) -> None:
        # Non-ASCII stays readable; objects JSON cannot encode are written as their str().
        super().__init__("%(message)s", json_default=str, json_ensure_ascii=False)
        self._current_task = current_task

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)
        log_data["process"] = record.processName
        task = self._current_task()
        if task is not None:
            log_data["task_name"], log_data["task_id"] = task
        trace = trace_id()
        if trace is not None:
            log_data["trace_id"] = trace


def use_json(handlers: list[logging.Handler], current_task: CurrentTask = _no_task) -> None:
    """Give each handler the JSON formatter."""
    for handler in handlers:
        handler.setFormatter(JsonFormatter(current_task))
