"""A real prefork worker under a soft time limit, and the pools the worker refuses to start with."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tests.integration.helpers import add_articles, sql
from tests.support.env import service_env
from tests.support.processes import CELERY, celery_worker, spawn
from worker.producer import enqueue_ingest
from worker.runtime.app import app

pytestmark = pytest.mark.acceptance

SHORT_LIMITS = service_env(
    TASK_SOFT_TIME_LIMIT="1", TASK_TIME_LIMIT="5", BROKER_VISIBILITY_TIMEOUT="30"
)
SLEEP = 3.0


def test_soft_time_limit_rolls_back_and_the_worker_carries_on(
    subprocess_workers_only: None, worker_logs: Path
) -> None:
    (article_id,) = add_articles(1)
    # One pool process, so the task after the interrupted one runs in the very same process.
    with celery_worker(SHORT_LIMITS, worker_logs, concurrency=1, name="limits") as worker:
        pool_before = worker.children()
        started = time.monotonic()
        # This process has the task registered, so Celery would stamp the message with this
        # process's own limits (300 s); explicit None leaves the worker's limits in force.
        slow = app.send_task(
            "tests.slow_write",
            kwargs={"article_id": article_id, "seconds": SLEEP},
            soft_time_limit=None,
            time_limit=None,
        )
        with pytest.raises(SoftTimeLimitExceeded):
            slow.get(timeout=30)
        failed_after = time.monotonic() - started
        # When the failure is reported, the query is no longer running on the server...
        still_sleeping = sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND state <> 'idle' AND query ILIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
        )
        # ...and nothing commits later, after the sleep would have ended.
        time.sleep(max(0.0, started + SLEEP + 1 - time.monotonic()))
        summary = sql("SELECT summary FROM articles WHERE id = :id", id=article_id)[0]["summary"]

        follow_up = enqueue_ingest(title="after the limit", body="Still working.").get(timeout=30)
        pool_after = worker.children()
        log = worker.log()

    assert failed_after < SLEEP  # the soft limit (1 s) stopped it, not the query's end
    assert still_sleeping == []
    assert summary is None
    assert follow_up["created"] is True
    assert pool_after == pool_before  # the soft limit did not cost a pool process
    assert "SoftTimeLimitExceeded" in log
    assert "Hard time limit" not in log


@pytest.mark.parametrize("pool", ["gevent"])
def test_green_thread_pool_is_refused_at_start(pool: str, worker_logs: Path) -> None:
    """gevent is in the dev extras so this starts a real gevent worker, which must refuse."""
    proc = spawn(
        [CELERY, "-A", "worker", "worker", "-P", pool, "-c", "2", "--without-mingle",
         "--without-gossip", "--without-heartbeat"],
        service_env(),
        worker_logs,
        f"refused-{pool}",
    )  # fmt: skip
    try:
        returncode = proc.popen.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"a {pool} worker started and kept running:\n{proc.log()[-3000:]}")
    log = proc.log()
    assert returncode != 0
    assert f"error: the {pool} pool is not supported" in log
    assert "Use -P prefork (default), -P threads or -P solo." in log
    assert " ready." not in log
