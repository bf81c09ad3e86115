"""Soft time limits: a job past its soft limit is cancelled inside the database too, its
transaction rolled back, and the same worker process serves the next job normally.
"""

from __future__ import annotations

import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from articles_client import contract
from tests.reliability.conftest import Stack

pytestmark = pytest.mark.reliability

LIMITS = {"TASK_SOFT_TIME_LIMIT": "2", "TASK_TIME_LIMIT": "6", "BROKER_VISIBILITY_TIMEOUT": "10"}


@pytest.mark.parametrize("bridge", ["nullpool", "loop"])
def test_write_past_soft_limit_is_rolled_back_and_worker_carries_on(
    stack: Stack, bridge: str
) -> None:
    stack.add_articles(2)
    env = stack.env(ASYNC_BRIDGE=bridge, **LIMITS)
    with stack.client() as app, stack.worker(env, concurrency=1) as worker:
        started = time.monotonic()
        # Writes, then sleeps 30 s inside the same transaction before committing.
        slow = app.send_task("tests.slow_write", args=[1, 30])
        with pytest.raises(SoftTimeLimitExceeded):
            slow.get(timeout=20)
        failed_after = time.monotonic() - started
        # Nothing is left running in PostgreSQL: the cancellation reached the server.
        sleeping = stack.sql(
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
        )
        nxt = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": 2})
        assert nxt.get(timeout=20)["status"] == "done"
        log = worker.log()
    print(f"\n[{bridge}] slow_write failed {failed_after:.1f}s after sending (soft limit 2 s)")
    assert failed_after < 6, "cancelled by the hard limit, not the soft one"
    assert sleeping[0]["n"] == 0
    assert "Soft time limit (2.0s) exceeded for tests.slow_write" in log
    assert "coroutine still running" not in log
    summaries = stack.sql("SELECT id, summary, status, times_processed FROM articles ORDER BY id")
    assert summaries[0]["summary"] is None, "the cancelled transaction's write is visible"
    assert (summaries[1]["status"], summaries[1]["times_processed"]) == ("done", 1)
    # The same pool process served the next job: it was not replaced or restarted.
    assert "ForkPoolWorker-2" not in log


def test_process_article_past_soft_limit_leaves_article_pending_then_completes(
    stack: Stack,
) -> None:
    stack.add_articles(2)
    # The job's claim waits on this lock past its soft limit.
    with (
        stack.row_lock(1) as lock,
        stack.client() as app,
        stack.worker(stack.env(**LIMITS), concurrency=1),
    ):
        stuck = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": 1})
        with pytest.raises(SoftTimeLimitExceeded):
            stuck.get(timeout=20)
        row = dict(
            stack.sql("SELECT status, attempts, times_processed FROM articles WHERE id = 1")[0]
        )
        lock.release()
        other = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": 2})
        assert other.get(timeout=20)["status"] == "done"
        again = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": 1})
        assert again.get(timeout=20)["status"] == "done"
    # The cancelled claim rolled back: no attempt counted, nothing written; still pending.
    assert row == {"status": "pending", "attempts": 0, "times_processed": 0}
    assert stack.times_processed() == {1: 2}
