"""The measurements. Each returns one figure per run; the caller repeats and takes medians."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import redis
from asgiref.sync import async_to_sync
from celery.states import READY_STATES

from bench.config import BenchConfig
from bench.workers import Worker
from db.engine import make_engine, make_sessionmaker
from tasks import jobs
from tasks.jobs import BatchResult
from worker.runtime.bridge import LoopBridge, NullPoolBridge

# A realistic article: a few paragraphs, so the Python processing is not free.
BODY = " ".join(
    [
        "Workers process articles in batches while the database keeps every claim honest.",
        "Each article is read, counted, summarised and tagged with its keywords.",
        "Throughput depends on round trips, logins and the cost of crossing into async code.",
        "A persistent event loop keeps its connections; a fresh loop must log in again.",
    ]
    * 4
)


async def _admin(cfg: BenchConfig, sql: str) -> None:
    conn = await asyncpg.connect(cfg.admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def recreate_database(cfg: BenchConfig) -> None:
    from db.migrate import upgrade

    asyncio.run(_admin(cfg, f'DROP DATABASE IF EXISTS "{cfg.database_name}" WITH (FORCE)'))
    asyncio.run(_admin(cfg, f'CREATE DATABASE "{cfg.database_name}"'))
    upgrade(cfg.database_url)


def seed(cfg: BenchConfig, count: int) -> None:
    """Empty the tables and insert `count` pending articles (ids 1..count)."""

    async def go() -> None:
        conn = await asyncpg.connect(cfg.plain_database_url)
        try:
            await conn.execute("TRUNCATE articles, pipeline_runs RESTART IDENTITY")
            await conn.execute(
                "INSERT INTO articles (title, body) "
                "SELECT 'article ' || n, $1 FROM generate_series(1, $2::int) AS n",
                BODY,
                count,
            )
            await conn.execute("VACUUM ANALYZE articles")
        finally:
            await conn.close()

    asyncio.run(go())


def task_throughput(
    worker: Worker, client: redis.Redis, name: str, kwargs: Sequence[dict[str, Any]]
) -> float:
    """Tasks/s in steady state: queue them all while the worker is paused, then let it run.

    The rate is taken over the middle 80% of completions (by the result's `date_done`), so the
    worker's first tasks (connections opening) and the tail do not distort it.
    """
    worker.pause()
    ids = [uuid.uuid4().hex for _ in kwargs]
    for task_id, kw in zip(ids, kwargs, strict=True):
        worker.app.send_task(name, kwargs=kw, queue=worker.queue, task_id=task_id)
    worker.resume()
    done = wait_results(client, ids)
    return steady_rate(done)


def wait_results(client: redis.Redis, ids: Sequence[str], timeout: float = 900) -> list[float]:
    keys = [f"celery-task-meta-{i}" for i in ids]
    deadline = time.monotonic() + timeout
    # Poll only the last task until it is over, so polling costs nothing while the worker runs.
    while not _finished([client.get(keys[-1])]):
        _check(deadline)
    while not _finished(metas := [m for chunk in _chunks(keys, 2000) for m in client.mget(chunk)]):
        _check(deadline)
    results = [json.loads(m) for m in metas]
    failed = [r for r in results if r["status"] != "SUCCESS"]
    if failed:
        raise RuntimeError(f"{len(failed)} benchmark tasks failed, e.g. {failed[0]['result']}")
    return sorted(datetime.fromisoformat(r["date_done"]).timestamp() for r in results)


def _finished(metas: Sequence[bytes | None]) -> bool:
    # With task_track_started the key exists (state STARTED) before the task is over.
    return all(m is not None and json.loads(m)["status"] in READY_STATES for m in metas)


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError("benchmark tasks did not finish")
    time.sleep(0.1)


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def steady_rate(times: list[float]) -> float:
    """Completions per second over the middle 80% of the sorted completion times."""
    first, last = int(len(times) * 0.1), int(len(times) * 0.9) - 1
    return (last - first) / (times[last] - times[first])


def pipeline_rate(cfg: BenchConfig, worker: Worker, client: redis.Redis) -> float:
    """Articles/s of one `articles.run_pipeline` task over `pipeline_articles` pending articles."""
    seed(cfg, cfg.pipeline_articles)
    result = worker.app.send_task(
        "articles.run_pipeline", kwargs={"batch_size": cfg.batch_size}, queue=worker.queue
    )
    outcome = result.get(timeout=600)
    assert outcome["succeeded"] == cfg.pipeline_articles, outcome
    return _run_rate(cfg, outcome["run_id"])


def direct_pipeline_rate(cfg: BenchConfig) -> float:
    """The same batches (`tasks.jobs`), awaited directly on one pooled connection: no Celery,
    no bridge. The practical limit of this machine for the batch work."""
    seed(cfg, cfg.pipeline_articles)

    async def go() -> int:
        engine = make_engine(cfg.database_url, pool_size=1)
        maker = make_sessionmaker(engine)
        try:
            async with maker() as s:
                run_id, _ = await jobs.start_run(
                    s, task_id=None, batch_size=cfg.batch_size, limit=None
                )
            totals = BatchResult(0, 0, 0)
            while True:
                async with maker() as s:
                    batch = await jobs.process_batch(
                        s, run_id=run_id, limit=cfg.batch_size, totals=totals
                    )
                if batch.claimed == 0:
                    break
                totals += batch
            async with maker() as s:
                await jobs.finish_run(s, run_id=run_id, totals=totals, error=None)
            assert totals.succeeded == cfg.pipeline_articles, totals
            return run_id
        finally:
            await engine.dispose()

    return _run_rate(cfg, asyncio.run(go()))


def _run_rate(cfg: BenchConfig, run_id: int) -> float:
    """Articles/s from the run's own timestamps, taken by the database's clock."""

    async def go() -> float:
        conn = await asyncpg.connect(cfg.plain_database_url)
        try:
            row = await conn.fetchrow(
                "SELECT succeeded, extract(epoch FROM finished_at - started_at) AS seconds "
                "FROM pipeline_runs WHERE id = $1",
                run_id,
            )
        finally:
            await conn.close()
        assert row is not None
        return float(row["succeeded"]) / float(row["seconds"])

    return asyncio.run(go())


async def _nothing() -> None:
    return None


def _per_call_us(call: Callable[[], object], calls: int) -> float:
    for _ in range(min(200, calls)):
        call()
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def bridge_overheads(cfg: BenchConfig) -> dict[str, float]:
    """µs per call of an empty coroutine, no database: the cost of crossing each bridge."""
    nullpool = NullPoolBridge(cfg.database_url, cancel_timeout=10)
    loop = LoopBridge(cfg.database_url, cancel_timeout=10, pool_size=1)
    inline = LoopBridge(cfg.database_url, cancel_timeout=10, pool_size=1, inline=True)
    floor_loop = asyncio.new_event_loop()
    floor_thread = threading.Thread(target=floor_loop.run_forever, daemon=True)
    floor_thread.start()

    def floor() -> None:
        # The least any handoff to another thread's loop can cost: wake it, be woken back.
        done = threading.Lock()
        done.acquire()
        floor_loop.call_soon_threadsafe(done.release)
        done.acquire()

    try:
        return {
            "async_to_sync": _per_call_us(
                lambda: async_to_sync(_nothing)(), max(200, cfg.bridge_calls // 5)
            ),
            "nullpool": _per_call_us(
                lambda: nullpool.run(_nothing), max(200, cfg.bridge_calls // 5)
            ),
            "loop": _per_call_us(lambda: loop.run(_nothing), cfg.bridge_calls),
            "loop_inline": _per_call_us(lambda: inline.run(_nothing), cfg.bridge_calls),
            "floor": _per_call_us(floor, cfg.bridge_calls),
        }
    finally:
        loop.close()
        inline.close()
        nullpool.close()
        floor_loop.call_soon_threadsafe(floor_loop.stop)
        floor_thread.join()
        floor_loop.close()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
