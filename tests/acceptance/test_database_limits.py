"""Per-session database limits: a row lock held by someone else ends as a retried `TransientError`
(lock_timeout, SQLSTATE 55P03), not a task hung until its hard time limit; a slow statement ends as
one too (statement_timeout, 57014). Directly (startup parameters) and behind PgBouncer (SET LOCAL
at every transaction start), each under one bridge.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client import contract
from articles_client.errors import TransientError
from db.engine import EngineOptions
from tests.integration.helpers import add_articles, sql
from tests.reliability.conftest import RowLock
from tests.support.env import DATABASE_URL, DB_NAME, service_env
from tests.support.pgbouncer import PrivatePgBouncer, private_pgbouncer
from tests.support.processes import celery_worker
from worker.runtime import bridge
from worker.runtime.app import app

pytestmark = pytest.mark.acceptance

# Generous hard limit: a task stuck on the lock would take this long; the retry comes in ~1 s.
LIMITS = {
    "DATABASE_LOCK_TIMEOUT": "1",
    "TASK_RETRY_BACKOFF_MAX": "1",
    "TASK_SOFT_TIME_LIMIT": "40",
    "TASK_TIME_LIMIT": "50",
    "BROKER_VISIBILITY_TIMEOUT": "120",
}
PLAIN_URL = DATABASE_URL.replace("+asyncpg", "")


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[PrivatePgBouncer | None]:
    if shutil.which("pgbouncer") is None:
        yield None
        return
    with private_pgbouncer(pool_size=2) as server:
        yield server


@pytest.mark.parametrize(
    ("through", "bridge_name"), [("direct", "nullpool"), ("pgbouncer", "loop")]
)
def test_a_held_row_lock_ends_in_a_retry_then_the_task_completes(
    through: str,
    bridge_name: str,
    pgbouncer: PrivatePgBouncer | None,
    subprocess_workers_only: None,
    worker_logs: Path,
) -> None:
    env = service_env(ASYNC_BRIDGE=bridge_name, **LIMITS)
    if through == "pgbouncer":
        if pgbouncer is None:
            pytest.skip("pgbouncer is not installed")
        env.update(DATABASE_URL=pgbouncer.url(DB_NAME), DATABASE_PGBOUNCER="true")
    (article_id,) = add_articles(1)
    with celery_worker(env, worker_logs, concurrency=1, name=f"limits-{through}") as worker:
        lock = RowLock(PLAIN_URL, article_id)
        try:
            started = time.monotonic()
            result = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": article_id})
            worker.wait_for_log("canceling statement due to lock timeout", timeout=15)
            first_retry = time.monotonic() - started
            worker.wait_for_log(" retry in ", timeout=15)
        finally:
            lock.close()
        assert result.get(timeout=30)["status"] == "done"
        total = time.monotonic() - started

    log = worker.log()
    assert "TransientError" in log
    assert "Traceback" not in log
    assert first_retry < 10, f"first lock timeout after {first_retry:.1f}s"
    assert total < 30, f"done after {total:.1f}s"
    assert sql("SELECT status, times_processed FROM articles WHERE id = :id", id=article_id) == [
        {"status": "done", "times_processed": 1}
    ]


async def _slow(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_sleep(5)"))


@pytest.mark.integration
def test_a_statement_over_the_statement_timeout_is_transient(clean_db: str) -> None:
    b = bridge.NullPoolBridge(
        DATABASE_URL, cancel_timeout=10, options=EngineOptions(statement_timeout_ms=300)
    )
    try:
        started = time.monotonic()
        with pytest.raises(TransientError, match="statement timeout"):
            b.run_in_session(_slow)
        assert time.monotonic() - started < 3
    finally:
        b.close()
