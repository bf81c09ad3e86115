"""The async work the article tasks run inside the bridge: one function per transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.contract import IngestPayload
from articles_client.errors import ArticleRejected, InvalidPayload
from db import queries
from db.queries import Claimed, Outcome
from tasks.analysis import analyse


class ArticleNotFound(InvalidPayload):
    """The article id names no article."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    claimed: int
    succeeded: int
    failed: int

    def __add__(self, other: BatchResult) -> BatchResult:
        """Running totals of a run: this batch's counts added to the ones so far."""
        return BatchResult(
            self.claimed + other.claimed,
            self.succeeded + other.succeeded,
            self.failed + other.failed,
        )


def decide(claimed: Claimed) -> Outcome:
    """Process one claimed article in Python: `done` with its fields, or `failed` with why."""
    try:
        result = analyse(claimed.body)
    except ArticleRejected as exc:
        return Outcome(id=claimed.id, status="failed", error=str(exc))
    return Outcome(
        id=claimed.id,
        status="done",
        word_count=result.word_count,
        reading_time_seconds=result.reading_time_seconds,
        summary=result.summary,
        keywords=result.keywords,
    )


async def ingest(
    session: AsyncSession, payload: IngestPayload, task_id: str | None = None
) -> dict[str, Any]:
    article_id, created = await queries.insert_article(
        session,
        title=payload.title,
        body=payload.body,
        source_url=payload.source_url,
        external_id=payload.external_id,
        task_id=task_id,
    )
    await session.commit()
    return {"article_id": article_id, "created": created}


async def process_article(session: AsyncSession, article_id: int) -> dict[str, Any]:
    """Claim, process and write one article in a single transaction.

    A duplicate delivery blocks on the row lock of the first, then finds the article no longer
    pending and reports its current state: one effect, however many deliveries.
    """
    token = uuid.uuid4().hex
    claimed = await queries.claim_article(session, article_id=article_id, token=token)
    if claimed is not None:
        outcome = decide(claimed)
        written = await queries.write_outcomes(session, token=token, outcomes=[outcome])
        await session.commit()
        if article_id in written:
            # What was just written is the article's state: no second transaction to read it.
            return {
                "article_id": article_id,
                "status": written[article_id],
                "word_count": outcome.word_count,
            }
    article = await queries.get_article(session, article_id=article_id)
    if article is None:
        raise ArticleNotFound(f"article {article_id} does not exist")
    return {"article_id": article.id, "status": article.status, "word_count": article.word_count}


async def start_run(
    session: AsyncSession, *, task_id: str | None, batch_size: int, limit: int | None
) -> tuple[int, int]:
    """Record a new run; return its id and how many articles it expects to see (for progress)."""
    run_id = await queries.start_run(session, task_id=task_id, batch_size=batch_size, limit=limit)
    await session.commit()
    pending = (await queries.count_by_status(session))["pending"]
    return run_id, pending if limit is None else min(limit, pending)


async def process_batch(
    session: AsyncSession, *, run_id: int, limit: int, totals: BatchResult
) -> BatchResult:
    """Claim up to `limit` articles, process them, write the outcomes in bulk.

    The claim commits first so other runs see the rows as taken; the write then commits the
    results together with the run's running totals. A worker that dies in between leaves the rows
    in `processing` until the reaper's lease returns them.
    """
    token = uuid.uuid4().hex
    claimed = await queries.claim_pending(session, limit=limit, token=token)
    await session.commit()
    if not claimed:
        return BatchResult(0, 0, 0)
    written = await queries.write_outcomes(
        session, token=token, outcomes=[decide(c) for c in claimed]
    )
    succeeded = sum(1 for status in written.values() if status == "done")
    batch = BatchResult(len(claimed), succeeded, len(written) - succeeded)
    running = totals + batch
    await queries.record_run_progress(
        session,
        run_id=run_id,
        claimed=running.claimed,
        succeeded=running.succeeded,
        failed=running.failed,
    )
    await session.commit()
    return batch


async def finish_run(
    session: AsyncSession, *, run_id: int, totals: BatchResult, error: str | None
) -> None:
    await queries.finish_run(
        session,
        run_id=run_id,
        status="failed" if error else "succeeded",
        claimed=totals.claimed,
        succeeded=totals.succeeded,
        failed=totals.failed,
        error=error,
    )
    await session.commit()
