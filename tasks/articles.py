"""The public article tasks, written with `@async_task` like any user's task.

Names and payloads are defined in `worker.contract`: `payload=` validates each call against its
versioned contract model, as it always has (positional arguments, the sender's contract version,
canvas predecessors).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from articles_client import contract
from articles_client.contract import IngestPayload, PipelineRunPayload, ProcessArticlePayload
from tasks import jobs
from tasks.jobs import BatchResult
from tasks.progress import Progress
from worker.runtime.async_tasks import async_task
from worker.runtime.settings import get_settings
from worker.runtime.task_context import TaskContext

log = logging.getLogger(__name__)


@async_task(name=contract.INGEST, payload=IngestPayload)
async def ingest(session: AsyncSession, payload: IngestPayload, ctx: TaskContext) -> dict[str, Any]:
    """Store one article as `pending`; a known `external_id` (or a redelivery of this same
    message) returns the existing id."""
    return await jobs.ingest(session, payload=payload, task_id=ctx.task_id)


@async_task(name=contract.PROCESS_ARTICLE, payload=ProcessArticlePayload)
async def process_article(session: AsyncSession, payload: ProcessArticlePayload) -> dict[str, Any]:
    """Process one pending article; an article already processed is reported, not redone."""
    return await jobs.process_article(session, article_id=payload.article_id)


@async_task(name=contract.RUN_PIPELINE, payload=PipelineRunPayload)
async def run_pipeline(ctx: TaskContext, payload: PipelineRunPayload) -> dict[str, Any]:
    """Claim and process pending articles in batches until none are left (or `limit` is hit),
    or until `PIPELINE_TIME_BUDGET_SECONDS` is spent: then the run ends `partial` and the next
    run (beat's next tick) takes the rest.

    Each batch is a transaction of its own (`ctx.session()`), so progress is reported between
    batches and a soft time limit, which cancels the coroutine, loses at most the batch in flight
    (rolled back, its claim retried later).
    """
    async with ctx.session() as session:
        run_id, expected = await jobs.start_run(
            session, task_id=ctx.task_id, batch_size=payload.batch_size, limit=payload.limit
        )
    totals = BatchResult(0, 0, 0)
    try:
        totals, complete = await _run_batches(ctx, run_id, payload, expected)
    except BaseException as exc:
        await _close_run(ctx, run_id, totals, error=_describe(exc))
        raise
    await _close_run(ctx, run_id, totals, error=None, complete=complete)
    return {
        "run_id": run_id,
        "claimed": totals.claimed,
        "succeeded": totals.succeeded,
        "failed": totals.failed,
        "complete": complete,
    }


async def _run_batches(
    ctx: TaskContext, run_id: int, payload: PipelineRunPayload, expected: int
) -> tuple[BatchResult, bool]:
    """Run batches; return the totals and whether the run got to the end of its work."""
    deadline = time.monotonic() + get_settings().pipeline_time_budget_seconds
    progress = Progress(ctx, run_id)
    totals = BatchResult(0, 0, 0)
    remaining = payload.limit
    while remaining is None or remaining > 0:
        if time.monotonic() >= deadline:
            return totals, False
        size = payload.batch_size if remaining is None else min(payload.batch_size, remaining)
        async with ctx.session() as session:
            batch = await jobs.process_batch(session, run_id=run_id, limit=size, totals=totals)
        if batch.claimed == 0:
            break
        totals += batch
        if remaining is not None:
            remaining -= batch.claimed
        await progress.report(totals, max(expected, totals.claimed))
    return totals, True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        # The bridge cancels the coroutine at a soft time limit (Celery's or its own) and when
        # the worker gives up waiting for it; the task then fails with SoftTimeLimitExceeded.
        return "SoftTimeLimitExceeded: cancelled on the async bridge"
    return f"{type(exc).__name__}: {exc}"[:500]


async def _close_run(
    ctx: TaskContext, run_id: int, totals: BatchResult, error: str | None, complete: bool = True
) -> None:
    # Runs on a cancelled coroutine too: an await after catching the cancellation proceeds (the
    # bridge waits up to BRIDGE_CANCEL_TIMEOUT for it), so the run is closed, not left running.
    try:
        async with ctx.session() as session:
            await jobs.finish_run(
                session, run_id=run_id, totals=totals, error=error, complete=complete
            )
    except Exception as exc:
        log.warning("could not record the end of run %s: %s", run_id, type(exc).__name__)
