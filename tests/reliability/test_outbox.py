"""The outbox relay as a real process against private servers: concurrent transactions, a
SIGKILL mid-batch, the broker and the database going away, and two relays sharing the table."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import make_engine
from tests.reliability.conftest import Stack
from tests.support import outbox as support
from tests.support.processes import spawn
from worker import outbox

pytestmark = pytest.mark.reliability

BODY = "One sentence about the outbox. Another sentence after it."


class RolledBack(Exception):
    pass


async def transactions(url: str, *, total: int, tasks: int, commit_every: int = 1) -> list[str]:
    """`total` transactions, one `articles.ingest` each (external id `tx-<i>`), run by `tasks`
    concurrent tasks; transaction i commits if i % commit_every == 0, else rolls back. Returns
    the committed external ids."""
    engine = make_engine(url, pool_size=tasks)
    committed: list[str] = []

    async def one(i: int) -> None:
        async with AsyncSession(engine) as session:
            try:
                async with session.begin():
                    await outbox.enqueue_async(
                        session, "articles.ingest", title=f"t{i}", body=BODY, external_id=f"tx-{i}"
                    )
                    if i % commit_every:
                        raise RolledBack
                committed.append(f"tx-{i}")
            except RolledBack:
                pass

    async def task(k: int) -> None:
        for i in range(k, total, tasks):
            await one(i)

    try:
        await asyncio.gather(*(task(k) for k in range(tasks)))
    finally:
        await engine.dispose()
    return committed


def enqueue(stack: Stack, count: int) -> set[str]:
    """`count` committed jobs, in one transaction; their task ids."""

    async def go() -> set[str]:
        engine = make_engine(stack.database_url)
        try:
            async with AsyncSession(engine) as session, session.begin():
                return {
                    await outbox.enqueue_async(
                        session, "articles.ingest", title=f"t{i}", body=BODY, external_id=f"e{i}"
                    )
                    for i in range(count)
                }
        finally:
            await engine.dispose()

    return asyncio.run(go())


def rows(stack: Stack) -> int:
    return int(stack.sql("SELECT count(*) AS n FROM articles_outbox")[0]["n"])


def ingested(stack: Stack) -> dict[str, str]:
    found = stack.sql("SELECT external_id, ingest_task_id FROM articles")
    return {r["external_id"]: r["ingest_task_id"] for r in found}


def test_1000_concurrent_transactions_half_rolled_back_run_exactly_the_committed_half(
    stack: Stack,
) -> None:
    with stack.worker(), support.relay(stack.env(), stack.log_dir):
        committed = asyncio.run(
            transactions(stack.database_url, total=1000, tasks=20, commit_every=2)
        )
        assert len(committed) == 500
        stack.wait_for(lambda: len(ingested(stack)) >= 500, 180, "500 committed jobs to run")
        time.sleep(2)  # room for a job that should not exist, or a second run
    assert set(ingested(stack)) == set(committed)
    assert rows(stack) == 0


def test_relay_killed_mid_batch_loses_nothing_and_each_job_applies_once(stack: Stack) -> None:
    task_ids = enqueue(stack, 1000)
    env = stack.env(OUTBOX_BATCH_SIZE="500")
    first = spawn([support.ARTICLES, "outbox", "relay"], env, stack.log_dir, "relay-1")
    queue = support.INGEST_QUEUE
    stack.wait_for(lambda: stack.queued(queue) > 0, 60, "the relay to start publishing", 0.005)
    first.kill()
    published, left = stack.queued(queue), rows(stack)
    # Killed inside a batch: it published rows it had not yet deleted.
    assert published > 1000 - left, (published, left)

    with support.relay(env, stack.log_dir, "relay-2"):
        stack.wait_for(lambda: rows(stack) == 0, 60, "the restarted relay to drain the outbox")
    queued = stack.queued_task_ids(queue)
    assert set(queued) == task_ids  # nothing lost
    assert len(queued) > len(task_ids)  # the killed batch's rows went out twice

    with stack.worker():
        stack.wait_for(lambda: len(ingested(stack)) >= 1000, 240, "every job to run")
        stack.wait_for(lambda: stack.queued(queue) == 0, 120, "the duplicates to be consumed")
        time.sleep(2)
    found = ingested(stack)
    assert len(found) == 1000  # each job's effect applied once
    assert set(found.values()) == task_ids


def test_broker_down_30s_everything_is_published_when_it_returns(stack: Stack) -> None:
    with support.relay(stack.env(), stack.log_dir) as relay:
        stack.stop_broker()
        down_at = time.monotonic()
        task_ids: set[str] = set()
        while time.monotonic() - down_at < 25:
            task_ids |= enqueue(stack, 25)
            time.sleep(5)
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        assert relay.popen.poll() is None, relay.log()
        assert rows(stack) == len(task_ids)  # they wait in the table
        assert "unreachable" in relay.log()
        # An outage is not the rows' fault: none was counted as a failed publish.
        assert stack.sql("SELECT max(attempts) AS m FROM articles_outbox")[0]["m"] == 0

        stack.start_broker()
        took = stack.wait_for(lambda: rows(stack) == 0, 60, "the backlog to be published")
        print(f"{len(task_ids)} rows published {took:.1f}s after the broker returned")
    queued = stack.queued_task_ids(support.INGEST_QUEUE)
    assert sorted(queued) == sorted(task_ids)  # each once


def test_database_down_the_relay_waits_and_carries_on(stack: Stack) -> None:
    with support.relay(stack.env(), stack.log_dir) as relay:
        stack.pg.stop()
        try:
            time.sleep(5)
            assert relay.popen.poll() is None, relay.log()
        finally:
            stack.pg.start()
        task_ids = enqueue(stack, 50)
        stack.wait_for(lambda: rows(stack) == 0, 60, "the relay to reconnect and publish")
        assert "unavailable" in relay.log()
    assert sorted(stack.queued_task_ids(support.INGEST_QUEUE)) == sorted(task_ids)


def test_two_relays_share_the_table_without_publishing_a_row_twice(stack: Stack) -> None:
    task_ids = enqueue(stack, 3000)
    env = stack.env(OUTBOX_BATCH_SIZE="100")
    with (
        support.relay(env, stack.log_dir, "relay-a") as a,
        support.relay(env, stack.log_dir, "relay-b") as b,
    ):
        stack.wait_for(lambda: rows(stack) == 0, 120, "two relays to drain the outbox")
    assert (a.popen.returncode, b.popen.returncode) == (0, 0)  # SIGTERM: a clean stop
    queued = stack.queued_task_ids(support.INGEST_QUEUE)
    assert len(queued) == 3000
    assert set(queued) == task_ids
    counts = [_published(p.log()) for p in (a, b)]
    assert sum(counts) == 3000
    assert min(counts) > 0, counts  # both took part


def _published(log: str) -> int:
    line = next(x for x in log.splitlines() if "outbox relay stopped:" in x)
    return int(line.split("stopped:")[1].split()[0])
