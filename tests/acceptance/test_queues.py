"""Queues by kind of work: in the default deployment (a main worker and a pipeline worker, as
`make worker` and compose run them) two long pipeline runs cannot hold up an ingest. The same
load on one worker that consumes every queue does hold it up: the split, not the queues alone,
is what keeps ingests fast."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from articles_client import contract
from tests.integration.helpers import add_articles, sql
from tests.support.env import service_env
from tests.support.processes import celery_worker
from worker.producer import enqueue_ingest, enqueue_pipeline_run

pytestmark = pytest.mark.acceptance

BACKLOG = 3000  # at batch size 1 each run lasts well past the measurement


def _two_long_runs() -> None:
    add_articles(BACKLOG)
    for _ in range(2):
        enqueue_pipeline_run(batch_size=1)
    deadline = time.monotonic() + 60
    while not sql("SELECT 1 FROM pipeline_runs WHERE status = 'running'"):
        assert time.monotonic() < deadline, "no pipeline run started"
        time.sleep(0.1)


def _ingest_seconds() -> float:
    started = time.monotonic()
    result = enqueue_ingest(title="Urgent", body="Breaking news. Now.")
    result.get(timeout=120)
    return time.monotonic() - started


def test_an_ingest_completes_within_2s_while_two_long_runs_hold_the_pipeline_worker(
    subprocess_workers_only: None, worker_logs: Path
) -> None:
    main = ",".join(contract.MAIN_WORKER_QUEUES)
    pipeline = ",".join(contract.PIPELINE_WORKER_QUEUES)
    with ExitStack() as stack:
        stack.enter_context(
            celery_worker(service_env(), worker_logs, name="main", extra_args=("-Q", main))
        )
        pipeline_worker = celery_worker(
            service_env(), worker_logs, concurrency=1, name="pipeline", extra_args=("-Q", pipeline)
        )
        stack.enter_context(pipeline_worker)
        _two_long_runs()
        seconds = _ingest_seconds()
        still_pending = sql("SELECT count(*) AS n FROM articles WHERE status = 'pending'")[0]["n"]
    print(f"\ningest completed in {seconds:.2f}s while {still_pending} articles still waited")
    assert still_pending > 0, "the runs finished before the ingest: the test proved nothing"
    assert seconds < 2


def test_the_same_load_on_one_worker_for_every_queue_holds_the_ingest_up(
    subprocess_workers_only: None, worker_logs: Path
) -> None:
    with celery_worker(service_env(), worker_logs, concurrency=2, name="single"):
        _two_long_runs()
        time.sleep(1)  # both runs hold both slots
        started = time.monotonic()
        result = enqueue_ingest(title="Urgent", body="Breaking news. Now.")
        waited = not result.ready()
        while not result.ready() and time.monotonic() - started < 2:
            time.sleep(0.05)
        held_up = not result.ready()
    print(f"\nsingle worker: the ingest was still waiting after 2 s: {held_up}")
    assert waited
    assert held_up
