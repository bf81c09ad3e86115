"""Progress is best effort: with the result backend (a private Redis) stopped in the middle of a
run, the failed progress writes are logged and the run still completes in the database."""

from __future__ import annotations

import json
import time

import pytest

from articles_client import contract
from tests.reliability.conftest import Stack
from tests.support.servers import private_redis

pytestmark = pytest.mark.reliability

ARTICLES = 400
# Long enough limits that the run is never cut short while progress writes are failing.
LIMITS = {
    "TASK_SOFT_TIME_LIMIT": "90",
    "PIPELINE_TIME_BUDGET_SECONDS": "85",
    "TASK_TIME_LIMIT": "100",
    "CLAIM_LEASE_SECONDS": "110",
    "BROKER_VISIBILITY_TIMEOUT": "120",
}


def test_run_completes_in_the_database_while_the_result_backend_is_down(stack: Stack) -> None:
    stack.add_articles(ARTICLES)
    with private_redis() as results:
        env = stack.env(CELERY_RESULT_BACKEND=results.url(), **LIMITS)
        with stack.client() as app, stack.worker(env, concurrency=1) as worker:
            app.conf.result_backend = results.url()
            run = app.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 5})
            key = f"celery-task-meta-{run.id}"
            stack.wait_for(
                lambda: b'"PROGRESS"' in (results.client().get(key) or b""), 30, "progress"
            )
            progress = json.loads(results.client().get(key) or b"{}")["result"]
            results.stop()
            stopped_at = time.monotonic()
            stack.wait_for(
                lambda: _run_status(stack) != "running", 150, "the run to end in the database"
            )
            ended_after = time.monotonic() - stopped_at
            log = worker.log()
    print(
        f"\nresult backend stopped at {progress['done']}/{progress['total']} done; the run "
        f"ended in the database {ended_after:.1f}s later"
    )
    assert progress["done"] < ARTICLES
    assert _run_status(stack) == "succeeded"
    assert stack.counts() == {"done": ARTICLES}
    assert "progress not recorded" in log
    assert "the run goes on" in log


def _run_status(stack: Stack) -> str:
    rows = stack.sql("SELECT status FROM pipeline_runs ORDER BY id LIMIT 1")
    return str(rows[0]["status"]) if rows else "running"
