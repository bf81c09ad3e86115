"""The base class of every public task: retry policy and which errors are expected."""

from __future__ import annotations

from typing import Any

from celery import Task

from articles_client import contract
from articles_client.contract import P, parse_payload
from articles_client.errors import ArticleRejected, InvalidPayload, TransientError
from worker.runtime.settings import get_settings

_settings = get_settings()


class ArticleTask(Task[Any, Any]):
    """Transient errors retry with exponential backoff and jitter; bad input fails at once."""

    autoretry_for = (TransientError,)
    retry_backoff = True
    retry_backoff_max = _settings.task_retry_backoff_max
    retry_jitter = True
    max_retries = _settings.task_max_retries
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
