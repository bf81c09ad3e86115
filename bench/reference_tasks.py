"""The bridge tax's reference: `process_article`'s work as a plain sync Celery task, on the
project's app (so the same settings and worker flags), with SQLAlchemy's sync engine on psycopg 3
and its default `QueuePool`: what a user would write without this project.

Loaded into the benchmark's `loop` worker through `EXTRA_TASK_MODULES`.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine

from bench import article_sql
from worker import app

_engine: tuple[int, Engine] | None = None


def _process_engine() -> Engine:
    """One pool per process, made after the fork: a pooled connection must not cross it."""
    global _engine
    if _engine is None or _engine[0] != os.getpid():
        url = os.environ["DATABASE_URL"].replace("+asyncpg", "+psycopg")
        _engine = (os.getpid(), create_engine(url))
    return _engine[1]


@app.task(name="bench.sync_process_article")
def sync_process_article(article_id: int) -> dict[str, Any]:
    return article_sql.process_sync(_process_engine(), article_id)
