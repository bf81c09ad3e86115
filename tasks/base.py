"""The base class of every public task: which errors are expected.

Retries (transient errors, until the deadline) and dead letters come from the app's task class,
`worker.runtime.task_base.WorkerTask`, which every task of the worker shares.
"""

from __future__ import annotations

from articles_client.errors import ArticleRejected, InvalidPayload
from worker.runtime.task_base import WorkerTask


class ArticleTask(WorkerTask):
    """Bad input fails at once, logged on one line."""

    # Expected failures: logged on one line without a traceback, never retried.
    throws = (InvalidPayload, ArticleRejected)
    # Validation happens in the task body, so a bad payload is a clear failure, not a TypeError.
    typing = False
