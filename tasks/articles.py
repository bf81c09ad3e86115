"""The public article tasks. Names and payloads are defined in `worker.contract`."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from celery import Task

from articles_client import contract
from articles_client.contract import IngestPayload, PipelineRunPayload, ProcessArticlePayload
from tasks import jobs
from tasks.base import ArticleTask, payload_of
from tasks.jobs import BatchResult
from tasks.progress import Progress
from worker.runtime import bridge
from worker.runtime.app import app
from worker.runtime.settings import get_settings

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
    """Claim and process pending articles in batches until none are left (or `limit` is hit),
    or until `PIPELINE_TIME_BUDGET_SECONDS` is spent: then the run ends `partial` and the next
    run (beat's next tick) takes the rest.

    Each batch crosses the bridge on its own, so progress is reported between batches and a soft
    time limit loses at most the batch in flight (rolled back, its claim retried later).
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
        totals, complete = _run_batches(Progress(self, run_id), run_id, payload, expected)
    except BaseException as exc:
        _close_run(run_id, totals, error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    _close_run(run_id, totals, error=None, complete=complete)
    return {
        "run_id": run_id,
        "claimed": totals.claimed,
        "succeeded": totals.succeeded,
        "failed": totals.failed,
        "complete": complete,
    }


def _run_batches(
    progress: Progress, run_id: int, payload: PipelineRunPayload, expected: int
) -> tuple[BatchResult, bool]:
    """Run batches; return the totals and whether the run got to the end of its work."""
    deadline = time.monotonic() + get_settings().pipeline_time_budget_seconds
    totals = BatchResult(0, 0, 0)
    remaining = payload.limit
    while remaining is None or remaining > 0:
        if time.monotonic() >= deadline:
            return totals, False
        size = payload.batch_size if remaining is None else min(payload.batch_size, remaining)
        batch = bridge.run_in_session(
            functools.partial(jobs.process_batch, run_id=run_id, limit=size, totals=totals)
        )
        if batch.claimed == 0:
            break
        totals += batch
        if remaining is not None:
            remaining -= batch.claimed
        progress.report(totals, max(expected, totals.claimed))
    return totals, True


def _close_run(run_id: int, totals: BatchResult, error: str | None, complete: bool = True) -> None:
    try:
        bridge.run_in_session(
            functools.partial(
                jobs.finish_run, run_id=run_id, totals=totals, error=error, complete=complete
            )
        )
    except Exception as exc:
        log.warning("could not record the end of run %s: %s", run_id, type(exc).__name__)
