"""The database side of the `articles` command: one async function per transaction.

They run through the one bridge (`worker.bridge.run_in_session`), like the tasks do, and reuse
the query functions in `db.queries`; nothing here opens an engine of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.contract import IngestPayload
from articles_client.errors import ArticlesError
from db import outbox as outbox_queries
from db import queries
from db.models import Article

# SQLite allows at most 32766 bound parameters in one statement; stay far below it.
_ID_CHUNK = 500


class UnknownRun(ArticlesError):
    """No pipeline run has the id asked for."""


@dataclass(frozen=True, slots=True)
class Inserted:
    created: list[int]
    existing: int


async def insert_articles(session: AsyncSession, *, articles: Sequence[IngestPayload]) -> Inserted:
    """Insert articles as `pending` in one transaction; a known `external_id` is not inserted."""
    created: list[int] = []
    for article in articles:
        article_id, new = await queries.insert_article(
            session,
            title=article.title,
            body=article.body,
            source_url=article.source_url,
            external_id=article.external_id,
        )
        if new:
            created.append(article_id)
    await session.commit()
    return Inserted(created=created, existing=len(articles) - len(created))


async def status(session: AsyncSession, *, runs: int, failures: int) -> dict[str, Any]:
    """Counts by status, the latest runs and the first failed articles, as plain data."""
    counts = await queries.count_by_status(session)
    recent = await queries.recent_runs(session, limit=runs)
    failed = await queries.failed_articles(session, limit=failures)
    outbox = await outbox_queries.backlog(session)
    return {
        "counts": {**counts, "total": sum(counts.values())},
        "recent_runs": [run.as_dict() for run in recent],
        "failed_articles": [
            {"id": a.id, "title": a.title, "attempts": a.attempts, "error": a.error} for a in failed
        ],
        "outbox": outbox,
    }


async def run_status(session: AsyncSession, *, run_id: int) -> dict[str, Any]:
    """One pipeline run as plain data; `UnknownRun` if there is none with that id."""
    run = await queries.get_run(session, run_id=run_id)
    if run is None:
        raise UnknownRun(f"no pipeline run with id {run_id}")
    return run.as_dict()


async def retry_failed(session: AsyncSession) -> int:
    count = await queries.retry_failed(session)
    await session.commit()
    return count


async def statuses_of(session: AsyncSession, *, ids: Sequence[int]) -> dict[str, int]:
    """How many of the articles `ids` are in each status."""
    counts = {"pending": 0, "processing": 0, "done": 0, "failed": 0}
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        rows = await session.execute(
            select(Article.status, func.count())
            .where(Article.id.in_(chunk))
            .group_by(Article.status)
        )
        for name, n in rows.tuples():
            counts[name] = counts.get(name, 0) + n
    return counts
