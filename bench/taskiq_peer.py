"""The taskiq peer: `process_article`'s work (`bench/article_sql.py`) as a taskiq task on
taskiq-redis's list queue, with SQLAlchemy's asyncio engine on asyncpg and its default pool.

Run by `bench/peers.py` as `taskiq worker bench.taskiq_peer:broker`; `BENCH_PEER_REDIS_URL` and
`DATABASE_URL` name the servers.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from taskiq import TaskiqEvents, TaskiqState
from taskiq_redis import ListQueueBroker

from bench import article_sql

QUEUE = "bench.taskiq"
broker = ListQueueBroker(url=os.environ.get("BENCH_PEER_REDIS_URL", ""), queue_name=QUEUE)
_engines: dict[int, AsyncEngine] = {}


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def _startup(_: TaskiqState) -> None:
    _engines[os.getpid()] = create_async_engine(os.environ["DATABASE_URL"])


@broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
async def _shutdown(_: TaskiqState) -> None:
    engine = _engines.pop(os.getpid(), None)
    if engine is not None:
        await engine.dispose()


@broker.task(task_name="bench.process_article")
async def process_article(article_id: int) -> dict[str, Any]:
    return await article_sql.process_async(_engines[os.getpid()], article_id)


async def enqueue(ids: range) -> None:
    await broker.startup()
    try:
        for article_id in ids:
            await process_article.kiq(article_id=article_id)
    finally:
        await broker.shutdown()
