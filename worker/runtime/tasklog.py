"""Worker logs that read at a glance: every line logged while a task runs names the task, and each
task ends with exactly one outcome line carrying its duration.

Celery's own outcome lines give a duration only on success ("succeeded in 0.01s"), not on failure
or retry; this module logs one line for every outcome instead and raises Celery's trace logger to
WARNING, so unexpected failures still get their traceback. Loaded by workers through `include`.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun
from celery.utils.log import get_multiprocessing_logger

from worker.runtime import logformat
from worker.runtime.settings import get_settings

log = logging.getLogger("worker.tasks")

# A context variable, not Celery's thread-local current task: the bridge copies the context into
# the thread where the coroutine runs, so lines logged there name their task too.
_current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "articles_task", default=None
)
_started: dict[str, tuple[float, contextvars.Token[tuple[str, str] | None]]] = {}

OUTCOME_WORDS = {
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "RETRY": "retry",
    "REJECTED": "rejected",
}
RESULT_CHARS = 200


class TaskContextFormatter(logging.Formatter):
    """Wraps a handler's formatter: appends `name[id]` to lines logged inside a task."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record)
        current = _current.get()
        if current is None or current[1] in text:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [{current[0]}[{current[1]}]]{newline}{rest}"


def current_task() -> tuple[str, str] | None:
    """(name, id) of the task this line is logged for, or None outside a task."""
    return _current.get()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _wrap_formatters(logger: logging.Logger | None = None, **_: Any) -> None:
    handlers = (logger or logging.getLogger()).handlers
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    if get_settings().log_format == "json":
        # Celery gives billiard's "multiprocessing" logger handlers of its own, too.
        pool_logger = get_multiprocessing_logger()
        if pool_logger is not None:
            handlers = [*handlers, *pool_logger.handlers]
        logformat.use_json(handlers, current_task)
        logging.captureWarnings(True)  # warnings become JSON lines too, not raw stderr text
        return
    for handler in handlers:
        if handler.formatter is not None and not isinstance(
            handler.formatter, TaskContextFormatter
        ):
            handler.setFormatter(TaskContextFormatter(handler.formatter))


@task_prerun.connect
def _started_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None:
        return
    token = _current.set((getattr(task, "name", "?"), task_id))
    _started[task_id] = (time.monotonic(), token)


@task_postrun.connect
def _finished_task(
    task_id: str | None = None,
    task: Any = None,
    retval: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    if task_id is None or task_id not in _started:
        return
    began, token = _started.pop(task_id)
    level = logging.INFO if state in ("SUCCESS", "RETRY") else logging.WARNING
    # Checked first: describing the result (its repr) is most of this hook's cost per task.
    if log.isEnabledFor(level):
        seconds = time.monotonic() - began
        name = getattr(task, "name", "?")
        word = OUTCOME_WORDS.get(state or "", (state or "ended").lower())
        detail = _describe(retval)
        log.log(level, "Task %s[%s] %s in %.3fs: %s", name, task_id, word, seconds, detail)
    try:
        _current.reset(token)
    except ValueError:  # set in another context (cannot happen in one worker thread)
        _current.set(None)


def _describe(value: Any) -> str:
    is_error = isinstance(value, BaseException)
    text = " ".join((f"{type(value).__name__}: {value}" if is_error else repr(value)).split())
    return text if len(text) <= RESULT_CHARS else text[: RESULT_CHARS - 1] + "…"
