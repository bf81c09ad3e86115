"""The `loop` bridge in real workers (`celery -A worker worker` subprocesses) under every pool it
supports: prefork (fork safety, soft time limits), solo and threads; and a clean shutdown.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from articles_client import contract
from tests.integration.helpers import add_articles, sql
from tests.support.env import service_env
from tests.support.processes import Proc, celery_worker
from worker.runtime.app import app

pytestmark = pytest.mark.acceptance

LOOP_ENV = service_env(ASYNC_BRIDGE="loop")
QUEUE = "bridge-loop-tests"
# Anything of this kind in a worker's log is a bridge bug; after "Warm shutdown", any traceback,
# warning or error is a shutdown bug.
BAD_ANYWHERE = (
    "Event loop is closed",
    "unclosed",
    "was never awaited",
    "Task was destroyed",
    "ResourceWarning",
    "RuntimeWarning",
    "bridge:",
)
BAD_AT_SHUTDOWN = ("Traceback", "Warning", "ERROR", "CRITICAL")


@contextmanager
def loop_worker(tmp_path: Path, *, concurrency: int, pool: str) -> Iterator[Proc]:
    """A worker with ASYNC_BRIDGE=loop on a queue of its own (an in-process worker of another
    test module may be consuming the default queue in the same session)."""
    with celery_worker(
        LOOP_ENV, tmp_path, concurrency=concurrency, pool=pool, extra_args=("-Q", QUEUE)
    ) as worker:
        yield worker


def backend_pids(count: int) -> dict[int, set[int]]:
    """Run `count` tests.backend_pid tasks; the PostgreSQL backends each worker process used."""
    results = [app.send_task("tests.backend_pid", queue=QUEUE) for _ in range(count)]
    seen: dict[int, set[int]] = defaultdict(set)
    for result in results:
        value = result.get(timeout=60)
        seen[value["worker_pid"]].add(value["backend_pid"])
    return dict(seen)


def worker_backends() -> list[dict[str, Any]]:
    return sql(
        "SELECT pid, state FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'articles-worker' "
        "AND pid <> pg_backend_pid()"
    )


def assert_clean_shutdown(proc: Proc) -> None:
    """Stopped with SIGTERM: exit 0, no warnings or tracebacks, every connection closed."""
    assert proc.stop() == 0
    log = proc.log()
    assert [line for line in log.splitlines() if any(bad in line for bad in BAD_ANYWHERE)] == []
    shutdown = log[log.index("Warm shutdown") :].splitlines()
    assert [line for line in shutdown if any(bad in line for bad in BAD_AT_SHUTDOWN)] == []
    deadline = time.monotonic() + 5
    while worker_backends() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker_backends() == []


def process_articles(count: int) -> None:
    ids = add_articles(count)
    results = [
        app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": i}, queue=QUEUE) for i in ids
    ]
    assert {r.get(timeout=60)["status"] for r in results} == {"done"}
    rows = sql("SELECT count(*) AS n FROM articles WHERE status = 'done' AND times_processed = 1")
    assert rows == [{"n": count}]


def test_prefork_children_each_build_and_reuse_their_own_pool(
    clean_db: str, clean_redis: Any, tmp_path: Path
) -> None:
    with loop_worker(tmp_path, concurrency=2, pool="prefork") as worker:
        seen = backend_pids(200)
        process_articles(50)
        assert set(seen) <= set(worker.children())
        # One connection per child, opened after fork and reused: never shared, never per task.
        assert all(len(backends) == 1 for backends in seen.values())
        assert len(set().union(*seen.values())) == len(seen)
    assert_clean_shutdown(worker)


def test_prefork_soft_time_limit_rolls_back_and_the_child_carries_on(
    clean_db: str, clean_redis: Any, tmp_path: Path
) -> None:
    (article_id,) = add_articles(1)
    with loop_worker(tmp_path, concurrency=1, pool="prefork") as worker:
        before = backend_pids(3)
        slow = app.send_task(
            "tests.slow_write",
            args=(article_id, 4.0),
            soft_time_limit=1,
            time_limit=30,
            queue=QUEUE,
        )
        with pytest.raises(SoftTimeLimitExceeded):
            slow.get(timeout=30, propagate=True)
        # The same child carries on with one pooled connection. (The interrupted one is closed
        # rather than reused: its state after a cancelled query is not trusted.)
        after = backend_pids(5)
        assert set(after) == set(before)
        assert all(len(backends) == 1 for backends in after.values())
        time.sleep(3.5)  # past the moment the interrupted sleep would have ended
        assert sql("SELECT summary FROM articles WHERE id = :id", id=article_id) == [
            {"summary": None}
        ]
        assert [b["state"] for b in worker_backends()] == ["idle"]
    assert_clean_shutdown(worker)


def test_solo_pool_runs_on_one_reused_connection(
    clean_db: str, clean_redis: Any, tmp_path: Path
) -> None:
    with loop_worker(tmp_path, concurrency=1, pool="solo") as worker:
        seen = backend_pids(50)
        process_articles(20)
        assert list(seen) == [worker.pid]
        assert len(seen[worker.pid]) == 1
    assert_clean_shutdown(worker)


def test_threads_pool_shares_one_loop_and_a_pool_sized_to_concurrency(
    clean_db: str, clean_redis: Any, tmp_path: Path
) -> None:
    with loop_worker(tmp_path, concurrency=4, pool="threads") as worker:
        seen = backend_pids(200)
        process_articles(50)
        assert list(seen) == [worker.pid]
        # pool_size = 4 (the concurrency) plus at most max_overflow = 2 under bursts.
        assert len(seen[worker.pid]) <= 6
        assert len(worker_backends()) <= 6
    assert_clean_shutdown(worker)
