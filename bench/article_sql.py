"""The per-article work as a user would write it without this project: one transaction that
claims a pending article, analyses it in Python and writes the results, leaving the `articles`
row as `articles.process_article` leaves it (tasks/jobs.py, db/queries.py: status, the analysis
fields, `attempts`, `times_processed`, `claimed_at`, `processed_at`, the claim token cleared).

Shared by the sync reference task (SQLAlchemy's sync engine on psycopg, `bench/reference_tasks.py`)
and the peers (taskiq and ARQ on SQLAlchemy's asyncio engine with asyncpg). It imports nothing
that needs Celery or kombu, because ARQ runs it from a virtualenv of its own (`bench/arq_peer.py`).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from articles_client.errors import ArticleRejected
from tasks.analysis import analyse

CLAIM = text(
    "UPDATE articles SET status = 'processing', claim_token = :token, claimed_at = now(), "
    "attempts = attempts + 1, updated_at = now() "
    "WHERE id = :id AND status = 'pending' RETURNING body"
)
WRITE = text(
    "UPDATE articles SET status = :status, word_count = :word_count, "
    "reading_time_seconds = :reading_time_seconds, summary = :summary, "
    "keywords = CAST(:keywords AS jsonb), error = :error, "
    "times_processed = times_processed + 1, processed_at = now(), updated_at = now(), "
    "claim_token = NULL WHERE id = :id AND claim_token = :token"
)


def outcome(article_id: int, body: str, token: str) -> dict[str, Any]:
    """The WRITE parameters: the analysis, or `failed` with why (as `tasks.jobs.decide`)."""
    row: dict[str, Any] = dict(
        id=article_id, token=token, status="done", word_count=None, reading_time_seconds=None,
        summary=None, keywords=None, error=None,
    )  # fmt: skip
    try:
        result = analyse(body)
    except ArticleRejected as exc:
        return row | {"status": "failed", "error": str(exc)}
    return row | {
        "word_count": result.word_count,
        "reading_time_seconds": result.reading_time_seconds,
        "summary": result.summary,
        "keywords": json.dumps(result.keywords),
    }


def _reply(article_id: int, row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"article_id": article_id, "status": "not pending", "word_count": None}
    return {"article_id": article_id, "status": row["status"], "word_count": row["word_count"]}


def process_sync(engine: Engine, article_id: int) -> dict[str, Any]:
    token = uuid.uuid4().hex
    with engine.begin() as conn:
        body = conn.execute(CLAIM, {"id": article_id, "token": token}).scalar_one_or_none()
        if body is None:
            return _reply(article_id, None)
        row = outcome(article_id, body, token)
        conn.execute(WRITE, row)
    return _reply(article_id, row)


async def process_async(engine: AsyncEngine, article_id: int) -> dict[str, Any]:
    token = uuid.uuid4().hex
    async with engine.begin() as conn:
        claimed = await conn.execute(CLAIM, {"id": article_id, "token": token})
        body = claimed.scalar_one_or_none()
        if body is None:
            return _reply(article_id, None)
        row = outcome(article_id, body, token)
        await conn.execute(WRITE, row)
    return _reply(article_id, row)
