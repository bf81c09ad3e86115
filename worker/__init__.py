"""The articles worker: `celery -A worker worker` finds the Celery app here as `worker.app`.

Importing `worker` (or `worker.producer`) is light: it validates no setting and creates no file.
The app and its full configuration load on first access to `worker.app`; `async_task`,
`TaskContext` and `lifespan` (write your own async tasks) load on first access too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from worker.runtime.async_tasks import TaskContext, async_task
    from worker.runtime.lifespan import lifespan

    app: Celery

__all__ = ["TaskContext", "app", "async_task", "lifespan"]

# The public names of the runtime, loaded on first access.
_LAZY = {
    "app": "worker.runtime.app",
    "async_task": "worker.runtime.async_tasks",
    "TaskContext": "worker.runtime.task_context",
    "lifespan": "worker.runtime.lifespan",
}


def __getattr__(name: str) -> Any:
    # PEP 562: Celery's `-A worker` looks the attribute up, which loads the runtime only then.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
