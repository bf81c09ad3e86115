"""`@async_task` user tasks (examples/user_tasks.py, loaded through EXTRA_TASK_MODULES) on real
`celery -A worker worker` subprocesses, under both bridges and the prefork, threads and solo pools.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from celery import chain, group
from celery.exceptions import SoftTimeLimitExceeded
from celery.result import AsyncResult

from articles_client.errors import InvalidPayload
from examples import user_tasks
from tests.integration.helpers import add_articles, sql, summary_of
from tests.support.env import service_env
from tests.support.processes import Proc, celery_worker
from worker.runtime.app import app

pytestmark = pytest.mark.acceptance

BRIDGES = ["nullpool", "loop"]
TIMEOUT = 30


def _times_processed(article_id: int) -> int:
    rows = sql("SELECT times_processed FROM articles WHERE id = :id", id=article_id)
    return int(rows[0]["times_processed"])


@pytest.mark.parametrize("bridge", BRIDGES)
def test_user_tasks_on_a_real_worker(
    subprocess_workers_only: None, worker_logs: Path, bridge: str
) -> None:
    ids = add_articles(3)
    # One pool process, so consecutive tasks share (or, on nullpool, do not share) its lifespan.
    with celery_worker(
        service_env(ASYNC_BRIDGE=bridge), worker_logs, concurrency=1, name=f"user-{bridge}"
    ) as worker:
        _session_tasks(ids)
        _no_session_and_canvas()
        _context_progress_and_retries()
        _bad_payload_fails_once(worker)
        _once_per_task_id(ids[2], worker)
        resources = [user_tasks.use_resource.delay().get(timeout=TIMEOUT) for _ in range(3)]
    log = worker.log()

    assert all(r["same_loop"] for r in resources), resources
    uses = [r["uses"] for r in resources]
    if bridge == "loop":
        # Entered once in the process, shared, and exited when the worker shut down.
        assert uses == [1, 2, 3]
        assert len({r["resource"] for r in resources}) == 1
        assert log.count("shared_resource entered") == 1
        assert "shared_resource exited in pid" in log
    else:
        # No loop outlives a call: entered and exited around each one.
        assert uses == [1, 1, 1]
        assert log.count("shared_resource exited in pid") == 3
    assert "coroutine still running" not in log


def _session_tasks(ids: list[int]) -> None:
    assert user_tasks.count_articles.delay(status="pending").get(timeout=TIMEOUT) == 3
    # By name and positionally, as a service in another language sends it.
    assert app.send_task("examples.count_articles", args=["done"]).get(timeout=TIMEOUT) == 0
    written = user_tasks.set_summary.delay(article_id=ids[0], summary="hello")
    assert written.get(timeout=TIMEOUT) is True
    assert summary_of(ids[0]) == "hello"


def _no_session_and_canvas() -> None:
    ref = uuid.uuid4()
    # JSON strings where the signature asks for a datetime, a duration, a UUID and a decimal.
    payload = {"at": "2026-11-26T12:00:00+00:00", "every": "PT1H", "ref": str(ref), "price": "1.25"}
    scheduled = app.send_task("examples.schedule", kwargs=payload).get(timeout=TIMEOUT)
    assert scheduled["next"].startswith("2026-11-26T13:00:00")
    assert (scheduled["ref"], scheduled["price"]) == (ref.hex, "2.50")
    # A Python sender passes the objects themselves (kombu's JSON tags datetime, UUID, Decimal).
    at = datetime(2026, 11, 26, 12, tzinfo=UTC)
    same = user_tasks.schedule.delay(at=at, every="PT1H", ref=ref, price=Decimal("1.25"))
    assert same.get(timeout=TIMEOUT) == scheduled

    add = user_tasks.add
    assert chain(add.s(1, 2), add.s(10), add.s(100)).apply_async().get(timeout=TIMEOUT) == 113
    assert chain(add.s(1, 2), add.si(5, 5)).apply_async().get(timeout=TIMEOUT) == 10
    assert group(add.s(i, i) for i in range(4)).apply_async().get(timeout=TIMEOUT) == [0, 2, 4, 6]


def _context_progress_and_retries() -> None:
    running = user_tasks.progress.delay(steps=4, pause=0.4)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while not running.ready() and time.monotonic() < deadline:
        if running.state == "PROGRESS":
            seen.append(running.info)
        time.sleep(0.05)
    assert running.get(timeout=TIMEOUT) == {"task_id": running.id, "retries": 0}
    assert seen, "no PROGRESS state was ever visible"
    assert all(info["total"] == 4 and 1 <= info["done"] <= 4 for info in seen)

    # Transient errors retry with the article tasks' policy; the context counts the attempts.
    assert user_tasks.flaky.delay(fail_times=2).get(timeout=TIMEOUT) == 2


def _bad_payload_fails_once(worker: Proc) -> None:
    bad = app.send_task(
        "examples.set_summary", kwargs={"article_id": "1", "summary": 5, "colour": "red"}
    )
    with pytest.raises(InvalidPayload) as caught:
        bad.get(timeout=TIMEOUT)
    message = str(caught.value)
    assert message.startswith("examples.set_summary: ")
    for problem in (
        "article_id: Input should be a valid integer",
        "summary: Input should be a valid string",
        "colour: Extra inputs are not permitted",
    ):
        assert problem in message
    # One outcome line, a failure, and no retry (results no longer carry a retry count).
    worker.wait_for_log(f"Task examples.set_summary[{bad.id}] failed", timeout=TIMEOUT)
    # received, failed, and kept in the dead-letter store
    assert worker.log().count(f"examples.set_summary[{bad.id}]") == 3
    assert f"examples.set_summary[{bad.id}] dead-lettered: invalid payload" in worker.log()
    assert f"examples.set_summary[{bad.id}] retry" not in worker.log()


def _once_per_task_id(article_id: int, worker: Proc) -> None:
    task_id = str(uuid.uuid4())
    first = user_tasks.bump_once.apply_async(kwargs={"article_id": article_id}, task_id=task_id)
    assert first.get(timeout=TIMEOUT) == 1
    # A duplicate delivery of the same task id: nothing done, the first result left alone.
    user_tasks.bump_once.apply_async(kwargs={"article_id": article_id}, task_id=task_id)
    worker.wait_for_log(f"examples.bump_once[{task_id}] already ran", timeout=TIMEOUT)
    assert AsyncResult(task_id, app=app).get(timeout=TIMEOUT) == 1
    assert _times_processed(article_id) == 1
    # Another task id runs again.
    assert user_tasks.bump_once.delay(article_id=article_id).get(timeout=TIMEOUT) == 2


SLEEP = 4.0


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
@pytest.mark.parametrize("bridge", BRIDGES)
def test_soft_limit_during_a_write_commits_nothing(
    subprocess_workers_only: None, worker_logs: Path, bridge: str, pool: str
) -> None:
    """`examples.slow_write` has soft_time_limit=1 and sleeps 4 s inside its transaction.

    Celery raises SoftTimeLimitExceeded only under prefork; under threads and solo the bridge's
    own deadline does it. Either way the write is rolled back before the failure is reported.
    """
    (article_id,) = add_articles(1)
    env = service_env(ASYNC_BRIDGE=bridge)
    with celery_worker(env, worker_logs, pool=pool, concurrency=2, name=f"{pool}-{bridge}") as w:
        started = time.monotonic()
        slow = user_tasks.slow_write.delay(article_id=article_id, seconds=SLEEP)
        with pytest.raises(SoftTimeLimitExceeded):
            slow.get(timeout=TIMEOUT)
        failed_after = time.monotonic() - started
        still_sleeping = sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND state <> 'idle' AND query ILIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
        )
        # Nothing commits later either, after the sleep would have ended.
        time.sleep(max(0.0, started + SLEEP + 1 - time.monotonic()))
        summary = summary_of(article_id)
        after = user_tasks.set_summary.delay(article_id=article_id, summary="after")
        assert after.get(timeout=TIMEOUT) is True
        log = w.log()

    print(f"\n[{pool}/{bridge}] slow_write failed {failed_after:.2f}s after sending (limit 1 s)")
    assert failed_after < SLEEP - 0.5
    assert still_sleeping == []
    assert summary is None
    assert "SoftTimeLimitExceeded" in log
    assert "coroutine still running" not in log
    if pool == "prefork":
        assert "exceeded for examples.slow_write" in log  # Celery's own signal came first
