"""Servers that go away: PostgreSQL stopped mid-run, the broker (Redis or RabbitMQ) restarted
mid-run, the result store down as tasks start, beat with the broker down.
Each uses this test's private server, so stopping it disturbs nobody else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from celery import Celery

from articles_client import contract
from tests.reliability.conftest import Stack
from tests.support.processes import ROOT
from tests.support.servers import private_redis

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("bridge", ["nullpool", "loop"])
def test_postgres_stopped_mid_run_every_article_ends_done_once(stack: Stack, bridge: str) -> None:
    # Enough work that the pipeline cannot finish before PostgreSQL stops: with one login per
    # bridge call, `nullpool` got through 600 articles before the stop took effect.
    total, singles = 2000, 300
    stack.add_articles(total)
    env = stack.env(ASYNC_BRIDGE=bridge, PIPELINE_INTERVAL_SECONDS="2")
    with stack.client() as app, stack.worker(env) as worker, stack.beat(env):
        # Single-article jobs and a pipeline run compete for the same rows.
        jobs = [
            app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": i})
            for i in range(1, singles + 1)
        ]
        app.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 10})
        stack.wait_for(lambda: stack.counts().get("done", 0) >= 50, 60, "work under way", 0.02)
        stack.pg.stop("fast")
        down_at = time.monotonic()
        time.sleep(3)
        stack.pg.start()
        recovered = stack.wait_for(stack.all_done(total), 120, "every article done")
        recovered += time.monotonic() - down_at - recovered
        states = [job.get(timeout=60)["status"] for job in jobs]
        log = worker.log()
    retries = log.count("TransientError")
    print(
        f"\n[{bridge}] PostgreSQL down 3 s; all {total} done {recovered:.1f}s after the stop; "
        f"log lines naming TransientError: {retries}"
    )
    assert retries > 0, "no task met the outage: it was not mid-run"
    assert "Retry in " in log
    # A single-article job that met a row claimed by the pipeline reports it as `processing`
    # and leaves it alone: the pipeline (or, after a lost write, the reaper) finishes it.
    assert set(states) <= {"done", "processing"}
    assert stack.counts() == {"done": total}
    assert stack.times_processed() == {1: total}


def _produce(stack: Stack, article_id: int) -> dict[str, Any]:
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "tests.reliability.produce", str(article_id)],
        cwd=ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    outcome: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    outcome["process_seconds"] = round(time.monotonic() - start, 2)
    return outcome


def _produce_after_restart(stack: Stack, article_id: int) -> dict[str, Any]:
    """Publish once Redis is back. The contract allows a clear BrokerUnavailable while the
    broker is still coming up, so a caller may try again; three tries must be enough."""
    tries = []
    for _ in range(3):
        tries.append(_produce(stack, article_id))
        if tries[-1]["ok"]:
            tries[-1]["tries"] = len(tries)
            return tries[-1]
        time.sleep(1)
    raise AssertionError(f"publishing after the restart kept failing: {tries}")


# Broker and result-store outages, timed like production: a task may wait out the result store's
# retries (about 3 s per store) well inside its limits (production: 300/360 s), and nothing the
# worker held may wait for the visibility timeout (production: 900 s) to come back.
PRODUCTION_TIMINGS = {
    "TASK_SOFT_TIME_LIMIT": "60",
    "TASK_TIME_LIMIT": "90",
    "CLAIM_LEASE_SECONDS": "150",
    "BROKER_VISIBILITY_TIMEOUT": "900",
}


def unfinished(stack: Stack) -> str:
    rows = stack.sql("SELECT id, status, attempts FROM articles WHERE status <> 'done' ORDER BY id")
    return "not done: " + ", ".join(f"{r['id']} {r['status']} ({r['attempts']})" for r in rows)


def test_broker_restarted_mid_run_worker_reconnects_and_nothing_is_lost(stack: Stack) -> None:
    total = 400
    stack.add_articles(total + 2)
    # The production visibility timeout: what the worker held when the connection died must come
    # back when it reconnects (worker/runtime/redelivery.py), not after 900 s.
    env = stack.env(**PRODUCTION_TIMINGS)
    with stack.client() as app, stack.worker(env) as worker:
        jobs = [
            app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": i})
            for i in range(1, total + 1)
        ]
        stack.wait_for(lambda: stack.counts().get("done", 0) >= 50, 60, "work under way", 0.02)
        stack.stop_broker()
        down = _produce(stack, total + 1)
        stack.start_broker()
        up = _produce_after_restart(stack, total + 2)
        recovered = stack.wait_for(
            stack.all_done(total + 1), 180, "every article done", detail=lambda: unfinished(stack)
        )
        # Results are best effort while Redis is away: a task that finishes during the outage
        # may be unable to store its result or be acknowledged, and its result can stay stale.
        # The database, not the result store, is the truth, so the guarantee checked is on the
        # articles (each done exactly once); the result states are reported.
        states = _state_counts(app, [job.id for job in jobs])
        log = worker.log()
    print(
        f"\nproducer with the broker down: {down}\nproducer after restart: {up}\n"
        f"all done {recovered:.1f}s after the broker came back; result states {states}"
    )
    assert not down["ok"]
    assert "BrokerUnavailable" not in down["error"]  # the message itself is the explanation
    assert "could not publish articles.process_article" in down["error"]
    assert down["process_seconds"] < 30
    assert up["ok"]
    assert "Connection to broker lost" in log
    assert log.count("Connected to " + stack.broker_url.split(":", 1)[0]) >= 2
    assert stack.counts() == {"done": total + 1, "pending": 1}
    assert stack.times_processed() == {1: total + 1, 0: 1}


def _state_counts(app: Celery, ids: list[str]) -> dict[str, int]:
    # Fresh AsyncResults: a held one caches the first ready state it saw (REVOKED, here).
    states = [app.AsyncResult(task_id).state for task_id in ids]
    return {state: states.count(state) for state in sorted(set(states))}


def test_beat_survives_the_broker_down_and_resumes_publishing(stack: Stack) -> None:
    env = stack.env(REAPER_INTERVAL_SECONDS="1", PIPELINE_INTERVAL_SECONDS="1")
    with stack.beat(env) as beat:
        stack.wait_for(lambda: stack.queued() > 0, 20, "beat publishing")
        stack.stop_broker()
        time.sleep(5)
        assert beat.popen.poll() is None, beat.log()
        stack.start_broker()
        stack.clear_queues()  # only what beat sends after the restart counts
        resumed = stack.wait_for(lambda: stack.queued() > 0, 30, "beat resuming")
        log = beat.log()
    print(f"\nbeat kept running through a 5 s broker outage; published again {resumed:.1f}s after")
    assert "Couldn't apply scheduled task" in log  # ticks during the outage: logged, dropped


def test_result_store_down_when_a_task_starts_the_task_still_runs(stack: Stack) -> None:
    """With TASK_TRACK_STARTED a task stores STARTED before its body runs. Celery failed a task
    whose STARTED could not be stored and acknowledged its message: the job was lost unrun."""
    total = 4
    stack.add_articles(total)
    with private_redis() as results:
        results.stop()
        env = stack.env(
            CELERY_RESULT_BACKEND=results.url(), TASK_TRACK_STARTED="true", **PRODUCTION_TIMINGS
        )
        with stack.client() as app, stack.worker(env) as worker:
            for article_id in range(1, total + 1):
                app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": article_id})
            took = stack.wait_for(stack.all_done(total), 120, "every article done")
            log = worker.log()
    print(f"\nresult store down: all {total} articles done in {took:.1f}s")
    assert log.count("could not record that task") >= total
    assert stack.times_processed() == {1: total}


def test_killed_pooled_connection_under_loop_retries_and_succeeds(stack: Stack) -> None:
    """No pre-ping: a `loop` worker's pooled connection killed server-side (a failover, an
    idle-connection killer, an administrator) is found dead at its next use; that task retries
    as `TransientError` on a new connection and succeeds, and nothing is done twice."""
    stack.add_articles(4)
    with (
        stack.client() as app,
        stack.worker(stack.env(ASYNC_BRIDGE="loop"), concurrency=1) as worker,
    ):
        warm = [app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": i}) for i in (1, 2)]
        assert [r.get(timeout=30)["status"] for r in warm] == ["done", "done"]
        killed = stack.sql(
            "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
            "WHERE application_name = 'articles-worker' AND datname = current_database()"
        )
        assert killed, "the worker held no pooled connection"
        assert all(row["ok"] for row in killed)
        after = [app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": i}) for i in (3, 4)]
        assert [r.get(timeout=60)["status"] for r in after] == ["done", "done"]
        log = worker.log()
    assert "TransientError" in log, "no task met the killed connection"
    assert "Retry in " in log
    assert stack.times_processed() == {1: 4}
