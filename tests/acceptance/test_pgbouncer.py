"""Workers behind a real PgBouncer in transaction pooling mode (Debian's 1.18: no named prepared
statements), with `DATABASE_PGBOUNCER=true`, under both bridges.

PgBouncer's pool (2 server connections) is smaller than the worker's clients (4 prefork children),
so one child's consecutive transactions run on different server connections: without the recipe
in `db/engine.py`, asyncpg's cached, counter-named prepared statements collide ("prepared
statement "__asyncpg_stmt_N__" already exists" / "does not exist"). The same workload also runs
directly against PostgreSQL, side by side, for the README's cost figure.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from articles_client import contract
from tests.acceptance.test_worker_pipeline import body_for
from tests.integration.helpers import add_articles, sql
from tests.support.env import DB_NAME, service_env
from tests.support.pgbouncer import PrivatePgBouncer, private_pgbouncer
from tests.support.processes import Proc, celery_worker
from worker.producer import enqueue_ingest, enqueue_pipeline_run
from worker.runtime.app import app

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.skipif(shutil.which("pgbouncer") is None, reason="pgbouncer is not installed"),
]

BRIDGES = ("nullpool", "loop")
# What a worker's log must never show: a failed or retried task, a driver error.
BAD = ("Traceback", "ERROR", " retry in ", " failed in ", "prepared statement")


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[PrivatePgBouncer]:
    with private_pgbouncer(pool_size=2) as server:
        yield server


def prepared_statements_left(bouncer: PrivatePgBouncer) -> int:
    """Prepared statements on the server connection PgBouncer hands us (one of its two)."""

    async def count() -> int:
        url = bouncer.url(DB_NAME).replace("+asyncpg", "")
        conn = await asyncpg.connect(url, statement_cache_size=0)
        try:
            # Without a cache asyncpg uses the unnamed statement, which the view does not list.
            rows = await conn.fetch("SELECT count(*) AS n FROM pg_prepared_statements")
            return int(rows[0]["n"])
        finally:
            await conn.close()

    return asyncio.run(count())


def worker_env(bouncer: PrivatePgBouncer | None, bridge: str) -> dict[str, str]:
    if bouncer is None:
        return service_env(ASYNC_BRIDGE=bridge)
    return service_env(
        ASYNC_BRIDGE=bridge, DATABASE_URL=bouncer.url(DB_NAME), DATABASE_PGBOUNCER="true"
    )


def assert_clean(worker: Proc) -> None:
    """Nothing bad while the worker ran. (At shutdown, the test's SIGTERM reaches the whole process
    group: a child that just finished may be reported "exited with signal 15"; not our concern.)"""
    log = worker.log().split("Warm shutdown")[0]
    bad = [line for line in log.splitlines() if any(word in line for word in BAD)]
    assert bad == [], "\n".join(bad[:20])


@pytest.mark.parametrize("bridge", BRIDGES)
def test_pipeline_over_1000_articles_through_pgbouncer(
    bridge: str, pgbouncer: PrivatePgBouncer, subprocess_workers_only: None, worker_logs: Path
) -> None:
    articles = 1000
    env = worker_env(pgbouncer, bridge)
    with celery_worker(env, worker_logs, concurrency=4, name=f"pgb-{bridge}") as worker:
        sent = [
            enqueue_ingest(title=f"Article {i}", body=body_for(i)[0], external_id=f"pgb-{i}")
            for i in range(articles)
        ]
        assert all(result.get(timeout=120)["created"] for result in sent)
        runs = [enqueue_pipeline_run(batch_size=50) for _ in range(4)]
        outcomes = [result.get(timeout=120) for result in runs]

    assert sum(o["claimed"] for o in outcomes) == articles
    assert sum(o["succeeded"] for o in outcomes) == articles
    rows = sql("SELECT external_id, status, word_count, times_processed FROM articles")
    assert {r["status"] for r in rows} == {"done"}
    assert {r["times_processed"] for r in rows} == {1}
    assert {r["external_id"]: r["word_count"] for r in rows} == {
        f"pgb-{i}": body_for(i)[1] for i in range(articles)
    }
    assert_clean(worker)


@pytest.mark.parametrize("bridge", BRIDGES)
@pytest.mark.parametrize("through", ["pgbouncer", "direct"])
def test_300_concurrent_process_article_tasks(
    bridge: str,
    through: str,
    pgbouncer: PrivatePgBouncer,
    subprocess_workers_only: None,
    worker_logs: Path,
    record_property: Any,
) -> None:
    tasks = 300
    env = worker_env(pgbouncer if through == "pgbouncer" else None, bridge)
    ids = add_articles(tasks)
    with celery_worker(env, worker_logs, concurrency=4, name=f"pa-{through}-{bridge}") as worker:
        started = time.monotonic()
        results = [app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": i}) for i in ids]
        statuses = [result.get(timeout=120)["status"] for result in results]
        seconds = time.monotonic() - started

    assert statuses == ["done"] * tasks
    rows = sql("SELECT count(*) AS n FROM articles WHERE status = 'done' AND times_processed = 1")
    assert rows == [{"n": tasks}]
    assert_clean(worker)
    if through == "pgbouncer":
        assert prepared_statements_left(pgbouncer) == 0
    record_property("tasks_per_second", round(tasks / seconds, 1))
    print(f"\n{tasks} process_article, {bridge} {through}: {tasks / seconds:.1f} tasks/s")
