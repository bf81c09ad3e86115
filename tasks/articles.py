"""The public article tasks. Names and payloads are defined in `worker.contract`."""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import Task

from articles_client import contract
from articles_client.contract import IngestPayload, PipelineRunPayload, ProcessArticlePayload
from tasks import jobs
from tasks.base import ArticleTask, payload_of
from tasks.jobs import BatchResult
from worker.runtime import bridge
from worker.runtime.app import app

log = logging.getLogger(__name__)


@app.task(name=contract.INGEST, base=ArticleTask, bind=True)
def ingest(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Store one article as `pending`; a known `external_id` (or a redelivery of this same
    message) returns the existing id."""
    payload = payload_of(self, IngestPayload, args, kwargs)
    return bridge.run_in_session(
        functools.partial(jobs.ingest, payload=payload, task_id=self.request.id)
    )


@app.task(name=contract.PROCESS_ARTICLE, base=ArticleTask, bind=True)
def process_article(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Process one pending article; an article already processed is reported, not redone."""
    payload = payload_of(self, ProcessArticlePayload, args, kwargs)
    return bridge.run_in_session(
        functools.partial(jobs.process_article, article_id=payload.article_id)
    )


@app.task(name=contract.RUN_PIPELINE, base=ArticleTask, bind=True)
def run_pipeline(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Claim and process pending articles in batches until none are left (or `limit` is hit).

    Each batch crosses the bridge on its own, so progress is reported between batches and a soft
    time limit loses at most the batch in flight (rolled back, its claim reaped later).
    """
    payload = payload_of(self, PipelineRunPayload, args, kwargs)
    run_id, expected = bridge.run_in_session(
        functools.partial(
            jobs.start_run,
            task_id=self.request.id,
            batch_size=payload.batch_size,
            limit=payload.limit,
        )
    )
    totals = BatchResult(0, 0, 0)
    try:
        totals = _run_batches(self, run_id, payload, expected)
    except BaseException as exc:
        _close_run(run_id, totals, error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    _close_run(run_id, totals, error=None)
    return {
        "run_id": run_id,
        "claimed": totals.claimed,
        "succeeded": totals.succeeded,
        "failed": totals.failed,
    }


def _run_batches(
    task: Task[Any, Any], run_id: int, payload: PipelineRunPayload, expected: int
) -> BatchResult:
    totals = BatchResult(0, 0, 0)
    remaining = payload.limit
    while remaining is None or remaining > 0:
        size = payload.batch_size if remaining is None else min(payload.batch_size, remaining)
        batch = bridge.run_in_session(
            functools.partial(jobs.process_batch, run_id=run_id, limit=size, totals=totals)
        )
        if batch.claimed == 0:
            break
        totals += batch
        if remaining is not None:
            remaining -= batch.claimed
        _report_progress(task, run_id, totals, max(expected, totals.claimed))
    return totals


def _report_progress(task: Task[Any, Any], run_id: int, totals: BatchResult, total: int) -> None:
    if not task.request.id or task.request.is_eager:
        return
    task.update_state(
        state="PROGRESS",
        meta={
            "run_id": run_id,
            "claimed": totals.claimed,
            "done": totals.succeeded + totals.failed,
            "succeeded": totals.succeeded,
            "failed": totals.failed,
            "total": total,
        },
    )


def _close_run(run_id: int, totals: BatchResult, error: str | None) -> None:
    try:
        bridge.run_in_session(
            functools.partial(jobs.finish_run, run_id=run_id, totals=totals, error=error)
        )
    except Exception as exc:
        log.warning("could not record the end of run %s: %s", run_id, type(exc).__name__)
