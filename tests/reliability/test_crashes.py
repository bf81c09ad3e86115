"""Workers that die: the whole worker SIGKILLed mid-run, one prefork child SIGKILLed mid-task,
and several workers racing over the same articles. Evidence of "not twice" is the
`times_processed` counter, incremented by every result write.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import asyncpg
import pytest

from articles_client import contract
from tests.reliability.conftest import Stack

pytestmark = pytest.mark.reliability

# For tests that need one run to go on for a while: the default test limits (soft 6 s) give a
# run a 4.8 s budget. The lease must exceed the hard limit.
LONG_RUNS = {
    "TASK_SOFT_TIME_LIMIT": "20",
    "TASK_TIME_LIMIT": "22",
    "CLAIM_LEASE_SECONDS": "23",
    "BROKER_VISIBILITY_TIMEOUT": "30",
}


def test_worker_killed_mid_run_loses_nothing_and_repeats_nothing(stack: Stack) -> None:
    total = 2000
    stack.add_articles(total)
    # Beat (reaper every 1 s, a pipeline run every 2 s) starts after the kill, so the only run
    # before it is ours: its message is the one the kill strands in Redis's unacked hash. Limits
    # long enough for that one run to reach the kill (its budget is 80% of the soft limit); the
    # lease must exceed the hard limit.
    env = stack.env(PIPELINE_INTERVAL_SECONDS="2", **LONG_RUNS)
    with stack.client() as app:
        with stack.worker(env, name="doomed", concurrency=1) as doomed:
            # Small batches: many claim/write transactions for the kill to land in.
            first = app.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 10})
            mid_batch = _MidBatch(stack.plain_url, done=total // 4)
            doomed.kill()
            killed_at = time.monotonic()
        at_kill = stack.counts()
        mid_batch.release()
        # Killed holding a claimed batch: only an expired lease can return those rows.
        assert at_kill.get("processing", 0) > 0, at_kill

        with stack.beat(env), stack.worker(env, name="survivor") as survivor:
            stack.wait_for(stack.all_done(total), 90, "every article done")
            recovered = time.monotonic() - killed_at
            # After the visibility timeout the survivor restores the killed run's message from
            # the unacked hash and runs it again: it claims only what is still pending, if any.
            stack.wait_for(lambda: first.state == "SUCCESS", 60, f"redelivery of {first.id}")
            redelivered_after = time.monotonic() - killed_at
            redelivered = first.result
            reaped = sum(int(n) for n in re.findall(r"'returned': (\d+)", survivor.log()))

    print(
        f"\nat SIGKILL: {at_kill}; all {total} done {recovered:.1f}s after it (new worker start "
        f"included); the killed run was redelivered and finished after {redelivered_after:.1f}s: "
        f"{redelivered}"
    )
    # The reaper and the runs' own claims race for the expired rows: either may take them.
    assert reaped <= at_kill["processing"]
    assert redelivered["claimed"] < total - at_kill.get("done", 0)
    assert stack.counts() == {"done": total}
    assert stack.times_processed() == {1: total}


class _MidBatch:
    """Holds the row lock of one article of a claimed batch, once `done` articles are done: the
    batch's write waits on it, so a kill lands while the batch is claimed and not yet written.
    (Polling for a claimed batch alone raced the write, which follows its claim within
    milliseconds on the same connection.)"""

    def __init__(self, url: str, *, done: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection = self._loop.run_until_complete(asyncpg.connect(url))
        self._tx = self._conn.transaction()
        self._loop.run_until_complete(asyncio.wait_for(self._hold(done), 60))

    async def _hold(self, done: int) -> None:
        # FOR UPDATE waits for a write in flight, then re-checks the row: if the batch was
        # written meanwhile it is no longer `processing` and is not returned.
        query = (
            "SELECT id FROM articles WHERE status = 'processing' "
            "AND (SELECT count(*) FROM articles WHERE status = 'done') >= $1 LIMIT 1 FOR UPDATE"
        )
        while True:
            await self._tx.start()
            if await self._conn.fetchval(query, done) is not None:
                return
            await self._tx.rollback()
            self._tx = self._conn.transaction()
            await asyncio.sleep(0.002)

    def release(self) -> None:
        self._loop.run_until_complete(self._tx.rollback())
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()


def test_prefork_child_killed_mid_task_is_requeued_and_completes_once(stack: Stack) -> None:
    stack.add_articles(3)
    # Hold the article's row lock so process_article is provably inside its transaction when
    # its process dies (its claim UPDATE waits on the lock).
    with (
        stack.row_lock(1) as lock,
        stack.client() as app,
        stack.worker(concurrency=1) as worker,
    ):
        result = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": 1})
        stack.wait_for(lambda: _waiting_on_lock(stack) >= 1, 30, "the task to block")
        (child,) = worker.children()
        os.kill(child, signal.SIGKILL)
        worker.wait_for_log("WorkerLostError", timeout=30)
        # task_reject_on_worker_lost: the message is back in the queue and a fresh child
        # takes it and blocks on the same lock (the dead child's backend still waits too).
        stack.wait_for(lambda: _waiting_on_lock(stack) >= 2, 30, "the requeued task")
        assert child not in worker.children()
        lock.release()
        assert result.get(timeout=30)["status"] == "done"
        other = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": 2})
        assert other.get(timeout=30)["status"] == "done"
        log = worker.log()
    assert log.count(f"articles.process_article[{result.id}] received") == 2
    row = stack.sql("SELECT status, attempts, times_processed FROM articles WHERE id = 1")[0]
    assert dict(row) == {"status": "done", "attempts": 1, "times_processed": 1}


def _waiting_on_lock(stack: Stack) -> int:
    rows = stack.sql(
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE application_name = 'articles-worker' AND wait_event_type = 'Lock'"
    )
    return int(rows[0]["n"])


def test_two_workers_three_concurrent_runs_process_each_article_once(stack: Stack) -> None:
    total = 5000
    stack.add_articles(total)
    env = stack.env(**LONG_RUNS)
    with stack.client() as app, stack.worker(env, name="alpha"), stack.worker(env, name="beta"):
        started = time.monotonic()
        runs = [app.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 50}) for _ in range(3)]
        outcomes = [run.get(timeout=120) for run in runs]
        elapsed = time.monotonic() - started
    print(f"\n3 runs over {total} articles on 2 workers in {elapsed:.1f}s: {outcomes}")
    assert sum(o["claimed"] for o in outcomes) == total
    assert stack.counts() == {"done": total}
    assert stack.times_processed() == {1: total}
    overlapping = stack.sql(
        "SELECT count(*) AS n FROM pipeline_runs a JOIN pipeline_runs b ON a.id < b.id "
        "WHERE a.started_at < b.finished_at AND b.started_at < a.finished_at AND a.claimed > 0 "
        "AND b.claimed > 0"
    )[0]["n"]
    print(f"pairs of runs that overlapped in time while both claiming: {overlapping}")
