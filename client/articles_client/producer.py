"""Enqueue article jobs from any Python service: needs only the broker.

Importing this module imports neither the tasks nor SQLAlchemy and reads no configuration: a web
service calls these functions without carrying the worker's code or database layer. The first
call builds a private Celery app from `ClientConfig` (the environment, or `configure(...)`).

Each function validates the payload with the same models the worker uses (raising
`InvalidPayload` before anything is sent), publishes by task name onto the default queue, and
returns the Celery `AsyncResult`.

Every function has an `_async` twin for callers inside an event loop; it runs the publish in a
thread so the loop is never blocked.

If the broker cannot be reached, publishing is retried a bounded number of times and then
`BrokerUnavailable` is raised: the call never hangs.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Final

from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from articles_client import contract
from articles_client.app import ClientApp, build_app
from articles_client.config import ClientConfig
from articles_client.contract import (
    IngestPayload,
    Payload,
    PipelineRunPayload,
    ProcessArticlePayload,
    parse_payload,
)
from articles_client.errors import BrokerUnavailable
from articles_client.urls import mask_url

# Bounded publish: three tries over about two seconds (plus each connect's own timeout).
RETRY_POLICY: Final = {
    "max_retries": 2,
    "interval_start": 0.2,
    "interval_step": 0.8,
    "interval_max": 1.0,
}


_lock = threading.Lock()
_app: ClientApp | None = None


def configure(config: ClientConfig | None = None, /, **fields: Any) -> ClientApp:
    """Configure the client explicitly, instead of from the environment.

    `configure(broker_url="redis://...", result_backend="redis://...")`, or pass a
    `ClientConfig`. Later calls replace the app; results already returned keep working.
    """
    global _app
    app = build_app(config if config is not None else ClientConfig(**fields))
    with _lock:
        previous, _app = _app, app
    if previous is not None:
        previous.close()
    return app


def client_app() -> ClientApp:
    """The client's Celery app, built from the environment on first use."""
    global _app
    with _lock:
        if _app is None:
            _app = build_app(ClientConfig.from_env())
        return _app


def _send(name: str, payload: Payload, *, task_id: str | None) -> AsyncResult[Any]:
    app = client_app()
    config = app.client_config
    try:
        return app.send_task(
            name,
            kwargs=payload.model_dump(exclude_defaults=True),
            task_id=task_id,
            retry=True,
            retry_policy=RETRY_POLICY,
        )
    except (OperationalError, ConnectionError, OSError) as exc:
        raise BrokerUnavailable(
            f"could not publish {name} to the broker at {mask_url(config.broker_url)}: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None
    except RuntimeError as exc:
        # Celery's Redis result backend subscribes to the result before publishing and raises
        # RuntimeError once its reconnect retries run out; the next call tries afresh.
        raise BrokerUnavailable(
            f"could not publish {name}: the result backend at "
            f"{mask_url(config.result_backend or '')} is unreachable"
        ) from exc


def enqueue_ingest(
    *,
    title: str,
    body: str,
    source_url: str | None = None,
    external_id: str | None = None,
    task_id: str | None = None,
) -> AsyncResult[Any]:
    """Enqueue `articles.ingest`.

    Duplicates: with an `external_id`, ingesting the same id again stores nothing new and the
    result says `created: false` with the existing `article_id`. Without one, every call stores a
    new article.
    """
    kwargs = {"title": title, "body": body, "source_url": source_url, "external_id": external_id}
    payload = parse_payload(IngestPayload, contract.INGEST, (), _present(kwargs))
    return _send(contract.INGEST, payload, task_id=task_id)


def enqueue_process_article(*, article_id: int, task_id: str | None = None) -> AsyncResult[Any]:
    """Enqueue `articles.process_article`.

    Duplicates: processing an article that is already done (or held by a pipeline run) changes
    nothing; the result reports its current status.
    """
    payload = parse_payload(
        ProcessArticlePayload, contract.PROCESS_ARTICLE, (), {"article_id": article_id}
    )
    return _send(contract.PROCESS_ARTICLE, payload, task_id=task_id)


def enqueue_pipeline_run(
    *, batch_size: int = 100, limit: int | None = None, task_id: str | None = None
) -> AsyncResult[Any]:
    """Enqueue `articles.run_pipeline`.

    Duplicates: runs may overlap freely; each pending article is claimed by exactly one of them.
    """
    kwargs = _present({"batch_size": batch_size, "limit": limit})
    payload = parse_payload(PipelineRunPayload, contract.RUN_PIPELINE, (), kwargs)
    return _send(contract.RUN_PIPELINE, payload, task_id=task_id)


async def enqueue_ingest_async(
    *,
    title: str,
    body: str,
    source_url: str | None = None,
    external_id: str | None = None,
    task_id: str | None = None,
) -> AsyncResult[Any]:
    """`enqueue_ingest` for callers in an event loop; publishes from a worker thread."""
    return await asyncio.to_thread(
        enqueue_ingest,
        title=title,
        body=body,
        source_url=source_url,
        external_id=external_id,
        task_id=task_id,
    )


async def enqueue_process_article_async(
    *, article_id: int, task_id: str | None = None
) -> AsyncResult[Any]:
    """`enqueue_process_article` for callers in an event loop."""
    return await asyncio.to_thread(enqueue_process_article, article_id=article_id, task_id=task_id)


async def enqueue_pipeline_run_async(
    *, batch_size: int = 100, limit: int | None = None, task_id: str | None = None
) -> AsyncResult[Any]:
    """`enqueue_pipeline_run` for callers in an event loop."""
    return await asyncio.to_thread(
        enqueue_pipeline_run, batch_size=batch_size, limit=limit, task_id=task_id
    )


def _present(kwargs: dict[str, Any]) -> dict[str, Any]:
    # None means "not given": the payload model's default applies.
    return {key: value for key, value in kwargs.items() if value is not None}
