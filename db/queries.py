"""Keyword-only async query functions. They take a session and never commit: the caller decides
the transaction. They work on PostgreSQL and on the embedded SQLite database alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, func, literal, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Article, PipelineRun, TaskRun


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    body: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing decided for one claimed article: `done` with fields, or `failed`."""

    id: int
    status: Literal["done", "failed"]
    word_count: int | None = None
    reading_time_seconds: int | None = None
    summary: str | None = None
    keywords: list[str] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Reaped:
    returned: int
    failed: int


def _dialect(session: AsyncSession) -> str:
    bind = session.bind
    assert bind is not None, "sessions here are always bound to an engine"
    return bind.dialect.name


def _seconds_ago(session: AsyncSession, seconds: float) -> ColumnElement[Any]:
    # Use the database's clock on both sides of the comparison: worker hosts may disagree.
    if _dialect(session) == "sqlite":
        return func.datetime("now", f"-{float(seconds)} seconds")
    return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, float(seconds))


async def insert_article(
    session: AsyncSession,
    *,
    title: str,
    body: str,
    source_url: str | None,
    external_id: str | None,
    task_id: str | None = None,
) -> tuple[int, bool]:
    """Insert a pending article; return `(id, created)`.

    With an `external_id` or an ingest `task_id` that already exists, nothing is written and the
    existing id comes back with `created=False`, so a repeated ingest (same external id) or a
    redelivered one (same task id) has exactly one effect.
    """
    values = {
        "title": title,
        "body": body,
        "source_url": source_url,
        "external_id": external_id,
        "ingest_task_id": task_id,
    }
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    stmt = insert(Article).values(**values)
    keys = [
        column == value
        for column, value in ((Article.external_id, external_id), (Article.ingest_task_id, task_id))
        if value is not None
    ]
    if keys:
        stmt = stmt.on_conflict_do_nothing()
    new_id = (await session.execute(stmt.returning(Article.id))).scalar_one_or_none()
    if new_id is not None:
        return new_id, True
    existing = await session.execute(select(Article.id).where(or_(*keys)).limit(1))
    return existing.scalar_one(), False


def _retryable(session: AsyncSession, lease_seconds: float) -> ColumnElement[bool]:
    """Articles claimed before that never got a result: back in `pending` after a crash rolled
    back their work, or still `processing` under a claim whose lease has expired (its holder
    died). Processing rows always have attempts > 0; saying so lets PostgreSQL use the partial
    index `ix_articles_retry`, which holds only these few rows.
    """
    return (
        (Article.attempts > 0)
        & Article.status.in_(("pending", "processing"))
        & or_(
            Article.status == "pending",
            Article.claimed_at < _seconds_ago(session, lease_seconds),
        )
    )


def gave_up_message(max_attempts: int) -> str:
    """The error of an article that used every attempt without a result."""
    return (
        f"gave up after {max_attempts} attempts without a result (each time the worker "
        "process died or its claim lease expired)"
    )


async def claim_pending(session: AsyncSession, *, limit: int, token: str) -> list[Claimed]:
    """Claim up to `limit` never-tried pending articles, oldest first, for the holder of `token`.

    `FOR UPDATE SKIP LOCKED` lets any number of workers claim at once without waiting on each
    other or ever claiming the same row; SQLite has no row locks and serialises writers instead.
    Articles tried before are left to `claim_retry`, which takes them one at a time.
    """
    # A MATERIALIZED CTE runs the locking select once. As a plain `IN (subquery)`, PostgreSQL
    # may plan it as the inner side of a semi join, rescan it per row and skip past the rows it
    # just locked, so the UPDATE claimed every pending article instead of `limit`.
    fresh = (Article.status == "pending") & (Article.attempts == 0)
    pending = (
        select(Article.id)
        .where(fresh)
        .order_by(Article.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("claimable")
        .prefix_with("MATERIALIZED")
    )
    return await _claim(session, Article.id.in_(select(pending.c.id)) & fresh, token)


async def claim_retry(
    session: AsyncSession, *, token: str, lease_seconds: float, max_attempts: int
) -> Claimed | None:
    """Claim one article that was claimed before without a result (see `_retryable`), fewest
    attempts first, counting the attempt; None if there is none.

    Taken alone, so an article that kills its worker process (a poison article) costs only
    itself an attempt: its neighbours from the batch it crashed get their results one by one.
    Articles that have used all `max_attempts` are marked failed first, never claimed again.
    """
    await fail_exhausted(session, lease_seconds=lease_seconds, max_attempts=max_attempts)
    retryable = _retryable(session, lease_seconds)
    one = (
        select(Article.id)
        .where(retryable)
        .order_by(Article.attempts, Article.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .cte("retryable")
        .prefix_with("MATERIALIZED")
    )
    claimed = await _claim(session, Article.id.in_(select(one.c.id)) & retryable, token)
    return next(iter(claimed), None)


async def fail_exhausted(session: AsyncSession, *, lease_seconds: float, max_attempts: int) -> int:
    """Mark failed the articles tried `max_attempts` times without a result; return how many."""
    stmt = (
        update(Article)
        .where(_retryable(session, lease_seconds), Article.attempts >= max_attempts)
        .values(
            status="failed",
            error=gave_up_message(max_attempts),
            claim_token=None,
            updated_at=func.now(),
        )
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What `count_attempt` did: counted an attempt and read the article (`article`), or found
    its attempts spent and marked it failed (`article` None)."""

    article: Claimed | None


# `count_attempt` as written SQL, prepared once per dialect: it is on every `process_article`'s
# path, where building the ORM statement (four CASEs, the lease predicate) and running it through
# the ORM's bulk-update machinery cost more CPU than the database's own work (py-spy: a fifth of
# the bridge thread). In SET, every column reads its value from before the update.
_COUNT_ATTEMPT_SET = """
    attempts = CASE WHEN attempts >= :max_attempts THEN attempts ELSE attempts + 1 END,
    status = CASE WHEN attempts >= :max_attempts THEN 'failed' ELSE 'pending' END,
    error = CASE WHEN attempts >= :max_attempts THEN :gave_up ELSE error END,
    claim_token = CASE WHEN attempts >= :max_attempts THEN NULL ELSE :token END,
"""
_COUNT_ATTEMPT_PG = text(
    f"""
    UPDATE articles SET {_COUNT_ATTEMPT_SET} updated_at = now()
    WHERE id = :id AND (status = 'pending' OR (status = 'processing' AND attempts > 0
        AND claimed_at < now() - make_interval(secs => :lease)))
    RETURNING id, body, attempts, status
    """
)
_COUNT_ATTEMPT_SQLITE = text(
    f"""
    UPDATE articles SET {_COUNT_ATTEMPT_SET} updated_at = CURRENT_TIMESTAMP
    WHERE id = :id AND (status = 'pending' OR (status = 'processing' AND attempts > 0
        AND claimed_at < datetime('now', :lease_modifier)))
    RETURNING id, body, attempts, status
    """
)


async def count_attempt(
    session: AsyncSession,
    *,
    article_id: int,
    token: str,
    lease_seconds: float,
    max_attempts: int,
) -> Attempt | None:
    """Count one attempt at an article that is claimable (pending, or held past its lease) and
    read its body, in one statement; None if it is not claimable (done, failed, or held by a
    live claim). An article whose attempts are spent is marked failed instead.

    The article is left `pending` under `token`, for `write_outcomes(..., held_as="pending")`:
    committed before the work, the count survives a crash of the work (an article that kills
    its worker process reaches `max_attempts` and stops being retried), and the article stays
    free for a retry at once. A later counter or claimer replaces the token, so only the last
    one's write counts.
    """
    params: dict[str, Any] = {
        "id": article_id,
        "token": token,
        "max_attempts": max_attempts,
        "gave_up": gave_up_message(max_attempts),
    }
    if _dialect(session) == "sqlite":
        stmt = _COUNT_ATTEMPT_SQLITE
        params["lease_modifier"] = f"-{float(lease_seconds)} seconds"
    else:
        stmt = _COUNT_ATTEMPT_PG
        params["lease"] = float(lease_seconds)
    row = (await session.execute(stmt, params)).one_or_none()
    if row is None:
        return None
    if row.status == "failed":
        return Attempt(article=None)
    return Attempt(Claimed(id=row.id, body=row.body, attempts=row.attempts))


async def _claim(session: AsyncSession, where: ColumnElement[bool], token: str) -> list[Claimed]:
    stmt = (
        update(Article)
        .where(where)
        .values(
            status="processing",
            claim_token=token,
            claimed_at=func.now(),
            attempts=Article.attempts + 1,
            updated_at=func.now(),
        )
        .returning(Article.id, Article.body, Article.attempts)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(stmt)).all()
    return sorted((Claimed(id=r.id, body=r.body, attempts=r.attempts) for r in rows), key=_by_id)


def _by_id(claimed: Claimed) -> int:
    return claimed.id


_WRITE_PG = text(
    """
    UPDATE articles AS a SET
        status = v.status,
        word_count = v.word_count,
        reading_time_seconds = v.reading_time_seconds,
        summary = v.summary,
        keywords = v.keywords,
        error = v.error,
        times_processed = a.times_processed + 1,
        processed_at = now(),
        updated_at = now(),
        claim_token = NULL
    FROM jsonb_to_recordset(CAST(:doc AS jsonb)) AS v(
        id bigint, status text, word_count int, reading_time_seconds int,
        summary text, keywords jsonb, error text)
    WHERE a.id = v.id AND a.claim_token = :token AND a.status = :held_as
    RETURNING a.id, a.status
    """
)

_WRITE_SQLITE = text(
    """
    UPDATE articles SET
        status = json_extract(v.value, '$.status'),
        word_count = json_extract(v.value, '$.word_count'),
        reading_time_seconds = json_extract(v.value, '$.reading_time_seconds'),
        summary = json_extract(v.value, '$.summary'),
        keywords = json_extract(v.value, '$.keywords'),
        error = json_extract(v.value, '$.error'),
        times_processed = times_processed + 1,
        processed_at = CURRENT_TIMESTAMP,
        updated_at = CURRENT_TIMESTAMP,
        claim_token = NULL
    FROM json_each(:doc) AS v
    WHERE articles.id = json_extract(v.value, '$.id')
      AND articles.claim_token = :token AND articles.status = :held_as
    RETURNING articles.id, articles.status
    """
)


async def write_outcomes(
    session: AsyncSession,
    *,
    token: str,
    outcomes: Sequence[Outcome],
    held_as: Literal["processing", "pending"] = "processing",
) -> dict[int, str]:
    """Write a batch of outcomes in one statement; return `{id: status}` of the rows written.

    A row is written only while the claim `token` still holds it, in the status its claim left
    it (`processing` after `claim_pending`/`claim_retry`, `pending` after `count_attempt`): if
    the reaper returned the article after a lease expired and another worker claimed it, this
    write is a no-op, so an article's results are written once however many workers touched it.
    """
    if not outcomes:
        return {}
    doc = json.dumps(
        [
            {
                "id": o.id,
                "status": o.status,
                "word_count": o.word_count,
                "reading_time_seconds": o.reading_time_seconds,
                "summary": o.summary,
                "keywords": o.keywords,
                "error": o.error,
            }
            for o in outcomes
        ]
    )
    stmt = _WRITE_PG if _dialect(session) == "postgresql" else _WRITE_SQLITE
    rows = (await session.execute(stmt, {"doc": doc, "token": token, "held_as": held_as})).all()
    return {row.id: row.status for row in rows}


async def get_article(session: AsyncSession, *, article_id: int) -> Article | None:
    return await session.get(Article, article_id)


async def reap_stale(session: AsyncSession, *, lease_seconds: float, max_attempts: int) -> Reaped:
    """Tidy articles held in `processing` past their lease: back to `pending`, or `failed` once
    they have used `max_attempts` claims.

    Only a cleaner: the claims themselves take expired rows (`claim_retry`, `count_attempt`), so
    nothing waits for this to run; it keeps `articles status` truthful when no run is claiming.
    """
    exhausted = Article.attempts >= max_attempts
    stmt = (
        update(Article)
        .where(
            Article.status == "processing",
            Article.claimed_at < _seconds_ago(session, lease_seconds),
        )
        .values(
            status=case((exhausted, literal("failed")), else_=literal("pending")),
            error=case((exhausted, literal(gave_up_message(max_attempts))), else_=Article.error),
            claim_token=None,
            updated_at=func.now(),
        )
        .returning(Article.status)
        .execution_options(synchronize_session=False)
    )
    statuses = (await session.execute(stmt)).scalars().all()
    failed = sum(1 for s in statuses if s == "failed")
    return Reaped(returned=len(statuses) - failed, failed=failed)


async def abandon_stale_runs(session: AsyncSession, *, older_than_seconds: float) -> int:
    """Mark runs still `running` long after any task could have (hard time limit) as abandoned."""
    stmt = (
        update(PipelineRun)
        .where(
            PipelineRun.status == "running",
            PipelineRun.started_at < _seconds_ago(session, older_than_seconds),
        )
        .values(status="abandoned", finished_at=func.now(), error="worker lost while running")
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


async def retry_failed(session: AsyncSession) -> int:
    """Put every failed article back to `pending` with a fresh attempt budget."""
    stmt = (
        update(Article)
        .where(Article.status == "failed")
        .values(status="pending", attempts=0, error=None, claim_token=None, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


async def start_run(
    session: AsyncSession, *, task_id: str | None, batch_size: int, limit: int | None
) -> int:
    run = PipelineRun(task_id=task_id, batch_size=batch_size, limit=limit)
    session.add(run)
    await session.flush()
    return run.id


async def record_run_progress(
    session: AsyncSession, *, run_id: int, claimed: int, succeeded: int, failed: int
) -> None:
    await session.execute(
        update(PipelineRun)
        .where(PipelineRun.id == run_id)
        .values(claimed=claimed, succeeded=succeeded, failed=failed)
    )


async def finish_run(
    session: AsyncSession,
    *,
    run_id: int,
    status: Literal["succeeded", "partial", "failed"],
    claimed: int,
    succeeded: int,
    failed: int,
    error: str | None = None,
) -> None:
    await session.execute(
        update(PipelineRun)
        .where(PipelineRun.id == run_id)
        .values(
            status=status,
            claimed=claimed,
            succeeded=succeeded,
            failed=failed,
            error=error,
            finished_at=func.now(),
        )
    )


async def get_run(session: AsyncSession, *, run_id: int) -> PipelineRun | None:
    return await session.get(PipelineRun, run_id)


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Article.status, func.count()).group_by(Article.status))
    counts = {"pending": 0, "processing": 0, "done": 0, "failed": 0}
    counts.update({status: n for status, n in rows})
    return counts


async def recent_runs(session: AsyncSession, *, limit: int = 10) -> list[PipelineRun]:
    rows = await session.execute(select(PipelineRun).order_by(PipelineRun.id.desc()).limit(limit))
    return list(rows.scalars())


async def failed_articles(session: AsyncSession, *, limit: int = 20) -> list[Article]:
    rows = await session.execute(
        select(Article).where(Article.status == "failed").order_by(Article.id).limit(limit)
    )
    return list(rows.scalars())


async def mark_task_run(session: AsyncSession, *, task_id: str, task_name: str) -> bool:
    """Record that `task_id` runs in this transaction; False if a committed run already did.

    A concurrent run of the same id holds the row: this waits for its transaction, then finds
    the row (it committed) or inserts it (it rolled back).
    """
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    stmt = (
        insert(TaskRun)
        .values(task_id=task_id, task_name=task_name)
        .on_conflict_do_nothing(index_elements=["task_id"])
        .returning(TaskRun.task_id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None
