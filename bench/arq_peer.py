"""The ARQ peer: `process_article`'s work (`bench/article_sql.py`) as an ARQ job, with
SQLAlchemy's asyncio engine on asyncpg and its default pool.

arq 0.28 needs redis<6 and kombu 5.7 needs redis>=6.4, so this runs from a virtualenv of its own
(`bench/peers.py` builds it under `var/`) and imports no project module that needs Celery:

    python -m bench.arq_peer enqueue COUNT   # queue jobs for articles 1..COUNT
    python -m bench.arq_peer work            # one worker process, one job at a time

`BENCH_PEER_REDIS_URL` and `DATABASE_URL` name the servers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _client_errors_without_producer() -> None:
    """Let `articles_client.errors` (needed by `tasks.analysis`) import without the package's
    `__init__`, which loads the producer and with it kombu."""
    package = types.ModuleType("articles_client")
    package.__path__ = [str(ROOT / "client" / "articles_client")]
    sys.modules.setdefault("articles_client", package)


_client_errors_without_producer()

from arq import create_pool, run_worker  # noqa: E402
from arq.connections import RedisSettings  # noqa: E402
from arq.worker import func  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench import article_sql  # noqa: E402

QUEUE = "bench.arq"


async def process_article(ctx: dict[str, Any], article_id: int) -> dict[str, Any]:
    return await article_sql.process_async(ctx["engine"], article_id)


async def startup(ctx: dict[str, Any]) -> None:
    ctx["engine"] = create_async_engine(os.environ["DATABASE_URL"])


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["engine"].dispose()


def _redis() -> RedisSettings:
    return RedisSettings.from_dsn(os.environ["BENCH_PEER_REDIS_URL"])


class WorkerSettings:
    functions = [func(process_article, name="process_article")]  # type: ignore[arg-type]
    on_startup = startup
    on_shutdown = shutdown
    queue_name = QUEUE
    redis_settings = _redis()
    # One job at a time per process, like a prefork child; the bench starts `concurrency` of
    # them. ARQ polls its queue: the default 0.5 s delay would cap a process at 2 jobs/s.
    max_jobs = 1
    poll_delay = 0.002
    handle_signals = True


async def enqueue(count: int) -> None:
    pool = await create_pool(_redis(), default_queue_name=QUEUE)
    try:
        for article_id in range(1, count + 1):
            await pool.enqueue_job("process_article", article_id)
    finally:
        await pool.aclose()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    if argv[:1] == ["enqueue"]:
        asyncio.run(enqueue(int(argv[1])))
    elif argv[:1] == ["work"]:
        run_worker(WorkerSettings)  # type: ignore[arg-type]
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
