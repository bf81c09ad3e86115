"""The public article tasks, written with `@async_task` like any user's task.

Names and payloads are defined in `worker.contract`: `payload=` validates each call against its
versioned contract model, as it always has (positional arguments, the sender's contract version,
canvas predecessors).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
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
    run = _Run(run_id, expected)
    try:
        complete = await _run_batches(ctx, run, payload)
    except BaseException as exc:
        # `run.totals` holds every batch that committed, so the row keeps the counts the
        # batches recorded instead of being reset to what a failed run never returned.
        await _close_run(ctx, run, error=_describe(exc))
        raise
    await _close_run(ctx, run, error=None, complete=complete)
    return {
        "run_id": run_id,
        "claimed": run.totals.claimed,
        "succeeded": run.totals.succeeded,
        "failed": run.totals.failed,
        "complete": complete,
    }


@dataclass
class _Run:
    """A pipeline run in progress: its row and what its committed batches add up to."""

    id: int
    expected: int
    totals: BatchResult = field(default_factory=lambda: BatchResult(0, 0, 0))


async def _run_batches(ctx: TaskContext, run: _Run, payload: PipelineRunPayload) -> bool:
    """Run batches, adding each to `run.totals`; return whether the run got to the end of its
    work (False: the time budget ran out first)."""
    deadline = time.monotonic() + get_settings().pipeline_time_budget_seconds
    progress = Progress(ctx, run.id)
    remaining = payload.limit
    while remaining is None or remaining > 0:
        if time.monotonic() >= deadline:
            return False
        size = payload.batch_size if remaining is None else min(payload.batch_size, remaining)
        async with ctx.session() as session:
            batch = await jobs.process_batch(session, run_id=run.id, limit=size, totals=run.totals)
        if batch.claimed == 0:
            break
        run.totals += batch
        if remaining is not None:
            remaining -= batch.claimed
        await progress.report(run.totals, max(run.expected, run.totals.claimed))
    return True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        # The bridge cancels the coroutine at a soft time limit (Celery's or its own) and when
        # the worker gives up waiting for it; the task then fails with SoftTimeLimitExceeded.
        return "SoftTimeLimitExceeded: cancelled on the async bridge"
    return f"{type(exc).__name__}: {exc}"[:500]


async def _close_run(ctx: TaskContext, run: _Run, error: str | None, complete: bool = True) -> None:
    # Runs on a cancelled coroutine too: an await after catching the cancellation proceeds (the
    # bridge waits up to BRIDGE_CANCEL_TIMEOUT for it), so the run is closed, not left running.
    try:
        async with ctx.session() as session:
            await jobs.finish_run(
                session, run_id=run.id, totals=run.totals, error=error, complete=complete
            )
    except Exception as exc:
        log.warning("could not record the end of run %s: %s", run.id, type(exc).__name__)
