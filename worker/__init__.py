"""The articles worker: `celery -A worker worker` finds the Celery app here as `worker.app`.

Importing `worker` (or `worker.producer`) is light: it validates no setting and creates no file.
The app and its full configuration load on first access to `worker.app`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    # PEP 562: Celery's `-A worker` looks the attribute up, which loads the runtime only then.
    if name == "app":
        from worker.runtime.app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
