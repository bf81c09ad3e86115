"""Benchmark settings, from the environment. Defaults keep clear of the test runs' databases.

- `BENCH_QUICK=1`: a smoke run (small counts, one repeat): checks the machinery, not the numbers.
- `BENCH_REPEATS` (default 2): repeated runs per measurement; the table shows medians.
- `BENCH_DATABASE_NAME` (default `articles_bench`), `BENCH_REDIS_DB` (default 12),
  `BENCH_PG_ADMIN_URL`, `BENCH_REDIS_HOST`: the servers. The database is dropped and recreated.
- `BENCH_CONCURRENCY` (default 2): prefork children per worker, and the peers' worker processes
  (one job at a time each), the same for every row.
- `BENCH_PEER_TASKS` (default 1500): articles per run of each peer (taskiq, ARQ).
- `BENCH_MEMORY_TASKS` (default 0): tasks each bridge's worker has run, at least, before the RSS
  row's second sample; by default only the repeats' tasks (the long memory soak is its own run).
- The counts are sized so a full run takes about 17 minutes on a 2-core machine at load 9-15
  (every row has grown since the first version; `BENCH_*_TASKS` raise them).
- `BENCH_OUT` (default `bench/`): where results.md and results.png go.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    repeats: int
    concurrency: int
    noop_tasks: int
    article_tasks_loop: int
    article_tasks_nullpool: int
    peer_tasks: int
    memory_tasks: int
    warmup_tasks: int
    pipeline_articles: int
    batch_size: int
    bridge_calls: int
    admin_url: str
    database_name: str
    redis_url: str
    out_dir: Path

    @property
    def database_url(self) -> str:
        host = self.admin_url.rsplit("/", 1)[0].split("://", 1)[1]
        return f"postgresql+asyncpg://{host}/{self.database_name}"

    @property
    def plain_database_url(self) -> str:
        """The same database for asyncpg itself (no SQLAlchemy driver suffix)."""
        return self.database_url.replace("+asyncpg", "")

    def worker_env(self, bridge: str, database_url: str | None = None) -> dict[str, str]:
        """A worker's environment; `database_url` replaces the bench database's (a login)."""
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url or self.database_url,
            CELERY_BROKER_URL=self.redis_url,
            CELERY_RESULT_BACKEND=self.redis_url,
            ASYNC_BRIDGE=bridge,
            EXTRA_TASK_MODULES="tests.support.tasks,bench.reference_tasks",
            BENCH_PEER_REDIS_URL=self.redis_url,
        )
        return env


def load() -> BenchConfig:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    redis_db = _int("BENCH_REDIS_DB", 12)
    redis_host = os.environ.get("BENCH_REDIS_HOST", "127.0.0.1:6379")
    return BenchConfig(
        quick=quick,
        repeats=_int("BENCH_REPEATS", 1 if quick else 2),
        concurrency=_int("BENCH_CONCURRENCY", 2),
        noop_tasks=_int("BENCH_NOOP_TASKS", 200 if quick else 3000),
        article_tasks_loop=_int("BENCH_ARTICLE_TASKS", 100 if quick else 1500),
        article_tasks_nullpool=_int("BENCH_ARTICLE_TASKS_NULLPOOL", 60 if quick else 500),
        peer_tasks=_int("BENCH_PEER_TASKS", 100 if quick else 1500),
        memory_tasks=_int("BENCH_MEMORY_TASKS", 100 if quick else 0),
        warmup_tasks=_int("BENCH_WARMUP_TASKS", 20 if quick else 500),
        pipeline_articles=_int("BENCH_PIPELINE_ARTICLES", 500 if quick else 5000),
        batch_size=_int("BENCH_BATCH_SIZE", 500),
        bridge_calls=_int("BENCH_BRIDGE_CALLS", 500 if quick else 5000),
        admin_url=os.environ.get(
            "BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        database_name=os.environ.get("BENCH_DATABASE_NAME", "articles_bench"),
        redis_url=f"redis://{redis_host}/{redis_db}",
        out_dir=Path(os.environ.get("BENCH_OUT", Path(__file__).resolve().parent)),
    )
