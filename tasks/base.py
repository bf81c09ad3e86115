"""The base class of every public task: which errors are expected.

Retries (transient errors, until the deadline) and dead letters come from the app's task class,
`worker.runtime.task_base.WorkerTask`, which every task of the worker shares.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from articles_client import contract
from articles_client.contract import P, parse_payload
from articles_client.errors import ArticleRejected, InvalidPayload
from worker.runtime.task_base import WorkerTask


class ArticleTask(WorkerTask):
    """Bad input fails at once, logged on one line."""

    # Expected failures: logged on one line without a traceback, never retried.
    throws = (InvalidPayload, ArticleRejected)
    # Validation happens in the task body, so a bad payload is a clear failure, not a TypeError.
    typing = False


def payload_of(
    task: Task[Any, Any], model: type[P], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> P:
    """Validate a job's arguments against the contract, as the version its sender speaks.

    The version travels in the message header `articles_contract`; without it (celery-node, a
    raw sender, a chain step sent by a worker) the message is read as this worker's own version.
    """
    version = getattr(task.request, contract.CONTRACT_HEADER, None)
    return parse_payload(model, task.name, args, kwargs, sender_version=version)
