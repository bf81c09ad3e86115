"""The async work the article tasks run inside the bridge: one function per transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.contract import IngestPayload
from articles_client.errors import ArticleRejected, InvalidPayload
from db import engine, queries
from db.queries import Claimed, Outcome
from tasks import analysis
from worker.runtime.settings import get_settings


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
        # Looked up on the module at each call, so a test hook can wrap it in the worker.
        result = analysis.analyse(claimed.body)
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


@dataclass(frozen=True, slots=True)
class ClaimPolicy:
    """When a claim is presumed dead, and how many attempts an article gets."""

    lease_seconds: float
    max_attempts: int


def claim_policy() -> ClaimPolicy:
    settings = get_settings()
    return ClaimPolicy(settings.claim_lease_seconds, settings.max_attempts)


async def process_article(session: AsyncSession, article_id: int) -> dict[str, Any]:
    """Count the attempt and read the article in one committed statement, then process it and
    write the outcome in one more: four round trips on a warm connection.

    The count survives a crash of the work (so an article that kills its process stops being
    retried after `MAX_ATTEMPTS`), and the article stays `pending` meanwhile, so a redelivery
    takes it again at once. The write counts only under this attempt's token and while the
    article is still pending: a duplicate delivery may do the work too, but only one writes.
    One effect, however many deliveries.
    """
    policy = claim_policy()
    token = uuid.uuid4().hex
    # In a transaction of its own, not in autocommit: were the worker process killed while the
    # statement waits on the row's lock, PostgreSQL would still run it once the lock frees and,
    # in autocommit, commit it before noticing the client is gone: a dead delivery's token would
    # replace a live one's and that write would be lost. Inside BEGIN it is rolled back
    # (tests/reliability/test_crashes.py::test_prefork_child_killed_mid_task...).
    attempt = await queries.count_attempt(
        session,
        article_id=article_id,
        token=token,
        lease_seconds=policy.lease_seconds,
        max_attempts=policy.max_attempts,
    )
    await session.commit()
    if attempt is not None and attempt.article is None:
        return {"article_id": article_id, "status": "failed", "word_count": None}
    if attempt is not None and attempt.article is not None:
        outcome = decide(attempt.article)
        # One statement needs no transaction around it: a zombie write (the same race) writes
        # nothing, since it counts only while its own token holds.
        await engine.autocommit_next(session)
        written = await queries.write_outcomes(
            session, token=token, outcomes=[outcome], held_as="pending"
        )
        await session.commit()
        if article_id in written:
            # What was just written is the article's state: no transaction to read it.
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
    """Process up to `limit` articles and record the run's running totals.

    Articles tried before without a result come first, one at a time (`retry_one_by_one`): one
    of them may be what killed the last worker. Only when there are none is a batch of fresh
    articles claimed and written in bulk (`process_fresh`).
    """
    batch = await retry_one_by_one(session, limit=limit, policy=claim_policy())
    if batch.claimed == 0:
        batch = await process_fresh(session, limit=limit)
    if batch.claimed:
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


async def process_fresh(session: AsyncSession, *, limit: int) -> BatchResult:
    """Claim up to `limit` never-tried articles, process them, write the outcomes in bulk.

    The claim commits first so other runs see the rows as taken (and the attempt is counted);
    a worker that dies before the write leaves the rows in `processing` until their lease
    expires, when `retry_one_by_one` takes them.
    """
    token = uuid.uuid4().hex
    claimed = await queries.claim_pending(session, limit=limit, token=token)
    await session.commit()
    if not claimed:
        return BatchResult(0, 0, 0)
    written = await queries.write_outcomes(
        session, token=token, outcomes=[decide(c) for c in claimed]
    )
    await session.commit()
    return _tally(len(claimed), written)


async def retry_one_by_one(
    session: AsyncSession, *, limit: int, policy: ClaimPolicy
) -> BatchResult:
    """Claim, process and write up to `limit` articles tried before, each in its own claim and
    write, so an article that kills the process costs only itself an attempt and its neighbours
    from the batch it crashed end `done`. Articles out of attempts are marked failed instead.
    """
    totals = BatchResult(0, 0, 0)
    for _ in range(limit):
        token = uuid.uuid4().hex
        claimed = await queries.claim_retry(
            session,
            token=token,
            lease_seconds=policy.lease_seconds,
            max_attempts=policy.max_attempts,
        )
        await session.commit()
        if claimed is None:
            break
        written = await queries.write_outcomes(session, token=token, outcomes=[decide(claimed)])
        await session.commit()
        totals += _tally(1, written)
    return totals


def _tally(claimed: int, written: dict[int, str]) -> BatchResult:
    succeeded = sum(1 for status in written.values() if status == "done")
    return BatchResult(claimed, succeeded, len(written) - succeeded)


async def finish_run(
    session: AsyncSession,
    *,
    run_id: int,
    totals: BatchResult,
    error: str | None,
    complete: bool = True,
) -> None:
    """Close the run: `failed` with its error, `partial` when its time budget ran out before the
    backlog did (the next run takes the rest), else `succeeded`."""
    await queries.finish_run(
        session,
        run_id=run_id,
        status="failed" if error else "succeeded" if complete else "partial",
        claimed=totals.claimed,
        succeeded=totals.succeeded,
        failed=totals.failed,
        error=error,
    )
    await session.commit()
