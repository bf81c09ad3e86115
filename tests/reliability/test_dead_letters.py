"""Every job ends somewhere: real prefork workers, private Redis and PostgreSQL.

- a user's plain `@app.task` failing (bad input, a bug) is dead-lettered, not lost;
- transient errors retry until the deadline after the first attempt, then are dead-lettered;
- a job that SIGKILLs its worker process is dead-lettered after MAX_DELIVERIES crashes, while
  the jobs around it complete;
- a PostgreSQL outage longer than the old count-based retry window loses no ingest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from articles_client import contract
from tests.reliability.conftest import Stack
from worker.runtime.deadletters.redis_store import RedisStore

pytestmark = pytest.mark.reliability

ARTICLES = str(Path(sys.executable).with_name("articles"))


def _store(stack: Stack) -> RedisStore:
    return RedisStore(
        stack.redis.url(), max_entry_bytes=65536, retention_seconds=3600, counter_ttl=60
    )


def _entries(stack: Stack) -> dict[str, dict[str, Any]]:
    store = _store(stack)
    try:
        return {e["task_id"]: e for e in store.list()}
    finally:
        store.close()


def _has(stack: Stack, *ids: str) -> Callable[[], bool]:
    return lambda: set(ids) <= set(_entries(stack))


def test_plain_task_failures_and_retries_past_the_deadline_are_dead_lettered(
    stack: Stack,
) -> None:
    env = stack.env(TASK_RETRY_DEADLINE_SECONDS="4", TASK_RETRY_BACKOFF_MAX="1")
    with stack.client() as app, stack.worker(env, concurrency=2) as worker:
        invalid = app.send_task("tests.fail", args=["invalid"], kwargs={"note": "n" * 100})
        bug = app.send_task("tests.fail", args=["bug"])
        sent = time.monotonic()
        transient = app.send_task("tests.fail", args=["transient"])
        stack.wait_for(_has(stack, invalid.id, bug.id), 30, "two dead letters")
        took = stack.wait_for(_has(stack, transient.id), 60, "the transient job past its deadline")
        gave_up_after = time.monotonic() - sent
        assert transient.get(timeout=10, propagate=False) is not None
        assert transient.state == "FAILURE"
        assert worker.popen.poll() is None
        log = worker.log()
    entries = _entries(stack)
    print(f"\ntransient job dead-lettered {gave_up_after:.1f}s after it was sent (deadline 4 s)")
    assert entries[invalid.id]["reason"] == "invalid payload"
    assert entries[invalid.id]["error"]["type"] == "InvalidPayload"
    assert entries[invalid.id]["args"] == ["invalid"]
    assert entries[invalid.id]["kwargs"] == {"note": "n" * 100}
    assert entries[invalid.id]["retries"] == 0, "bad input is never retried"
    assert entries[bug.id]["error"] == {"type": "ValueError", "message": "a bug in a user's task "}
    assert entries[bug.id]["queue"] == contract.QUEUE
    late = entries[transient.id]
    assert late["error"]["type"] == "TransientError"
    assert late["reason"].startswith("retry deadline passed")
    assert late["retries"] >= 2
    span = _seconds(late["last_failed_at"]) - _seconds(late["first_failed_at"])
    assert 3.5 <= span <= 8, span
    assert took < 60
    assert f"tests.fail[{transient.id}] dead-lettered" in log


def _seconds(iso: str) -> float:
    from worker.runtime.deadletters.entry import parse_iso

    return parse_iso(iso)


def test_a_job_that_kills_its_worker_is_dead_lettered_after_max_deliveries(stack: Stack) -> None:
    env = stack.env(MAX_DELIVERIES="3")
    with stack.client() as app, stack.worker(env, concurrency=2) as worker:
        before = [
            app.send_task(contract.INGEST, kwargs={"title": f"before {i}", "body": "One. Two."})
            for i in range(20)
        ]
        sent = time.monotonic()
        poison = app.send_task("tests.crash")
        after = [
            app.send_task(contract.INGEST, kwargs={"title": f"after {i}", "body": "One. Two."})
            for i in range(20)
        ]
        took = stack.wait_for(_has(stack, poison.id), 90, "the poison job dead-lettered")
        for result in before + after:
            assert result.get(timeout=60)["created"] is True
        assert poison.get(timeout=10, propagate=False) is not None
        assert poison.state == "FAILURE"
        assert type(poison.result).__name__ == "PoisonJob"
        assert worker.popen.poll() is None
        log = worker.log()
        client = stack.redis.client()
        leftover = client.exists(f"articles:deliveries:{poison.id}")
    entry = _entries(stack)[poison.id]
    print(
        f"\npoison job dead-lettered {took:.1f}s after it was sent ({time.monotonic() - sent:.1f}s)"
    )
    assert entry["task"] == "tests.crash"
    assert entry["error"]["type"] == "PoisonJob"
    assert entry["deliveries"] == 4, "three deliveries crashed, the fourth was refused"
    assert log.count("WorkerLostError") + log.count("exited with 'signal 9") >= 3
    assert leftover == 0, "the counter is dropped once the job ended"
    assert stack.sql("SELECT count(*) AS n FROM articles")[0]["n"] == 40


def test_a_job_killed_by_the_hard_time_limit_is_dead_lettered(stack: Stack) -> None:
    env = stack.env(TASK_SOFT_TIME_LIMIT="1", TASK_TIME_LIMIT="2")
    with stack.client() as app, stack.worker(env, concurrency=1) as worker:
        job = app.send_task("tests.stubborn", args=[30])
        stack.wait_for(_has(stack, job.id), 30, "the job killed by its hard limit dead-lettered")
        after = app.send_task(contract.INGEST, kwargs={"title": "after", "body": "One. Two."})
        assert after.get(timeout=30)["created"] is True
        assert worker.popen.poll() is None
        leftover = stack.redis.client().exists(f"articles:deliveries:{job.id}")
    entry = _entries(stack)[job.id]
    assert entry["error"]["type"] == "TimeLimitExceeded"
    assert entry["reason"].startswith("hard time limit")
    assert entry["args"] == [30]
    assert entry["deliveries"] == 1
    assert leftover == 0, "the main process drops the count the killed child left"


def _articles(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [ARTICLES, *args], env=stack.env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def test_ingests_dead_lettered_during_an_outage_are_replayed_once_and_the_rest_purged(
    stack: Stack,
) -> None:
    env = stack.env(TASK_RETRY_DEADLINE_SECONDS="3", TASK_RETRY_BACKOFF_MAX="1")
    with stack.client() as app, stack.worker(env, concurrency=2):
        stack.pg.stop()
        try:
            ingests = [
                app.send_task(
                    contract.INGEST,
                    kwargs={"title": f"t{i}", "body": "One. Two.", "external_id": f"dl-{i}"},
                )
                for i in range(10)
            ]
            bug = app.send_task("tests.fail", args=["bug"], kwargs={"note": "n" * 5000})
            ids = [r.id for r in ingests]
            stack.wait_for(
                _has(stack, *ids, bug.id), 60, "11 dead letters while PostgreSQL is down"
            )
            # The store lives beside the queues: the command reads it with PostgreSQL down.
            listed = json.loads(_articles(stack, "dead-letters", "list", "--json").stdout)
        finally:
            stack.pg.start()
        status = json.loads(_articles(stack, "status", "--json").stdout)
        assert status["dead_letters"] == 11
        assert isinstance(listed, list)
        by_id = {e["task_id"]: e for e in listed}
        assert set(by_id) == {*ids, bug.id}
        note = by_id[bug.id]["kwargs"]["note"]
        assert len(note) < 300, "long strings are cut in the listing"
        assert note.startswith("nnn")
        for entry in listed:
            assert {"task_id", "task", "args", "kwargs", "error", "deliveries"} <= set(entry)
            assert entry["first_failed_at"].endswith("Z")
            assert entry["last_failed_at"].endswith("Z")
        assert by_id[ids[0]]["error"]["type"] == "TransientError"

        purged = _articles(stack, "dead-letters", "purge", bug.id)
        assert "1 dead letter(s) purged" in purged.stdout
        started = time.monotonic()
        replayed = _articles(stack, "dead-letters", "replay", "--all")
        command = time.monotonic() - started
        assert "10 dead letter(s) replayed" in replayed.stdout
        stack.wait_for(
            lambda: stack.sql("SELECT count(*) AS n FROM articles")[0]["n"] == 10, 30, "replays"
        )
        took = time.monotonic() - started
        # Same task ids: the replayed ingests are the original jobs (their idempotency key).
        rows = stack.sql("SELECT ingest_task_id FROM articles")
        assert {r["ingest_task_id"] for r in rows} == set(ids)
        for result in ingests:
            assert result.get(timeout=30)["created"] is True
        assert json.loads(_articles(stack, "dead-letters", "list", "--json").stdout) == []
        # Replaying the same ids again is a clear error, not a second job.
        again = subprocess.run(
            [ARTICLES, "dead-letters", "replay", ids[0]],
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 1
        assert f"error: no dead letter with task id {ids[0]}" in again.stderr
    print(
        f"\n10 ingests replayed and stored {took:.1f}s after `replay --all` started "
        f"(the command itself took {command:.1f}s)"
    )


# The old policy: 8 retries, backoff min(cap, 2**n) with full jitter. With a 2 s cap its whole
# window was at most 1 + 7 * 2 = 15 s: every ingest sent into a longer outage was lost.
OLD_MAX_RETRIES = 8
OLD_WINDOW_MAX = 1 + (OLD_MAX_RETRIES - 1) * 2
OUTAGE = 30


def test_an_outage_longer_than_the_old_retry_window_loses_no_ingest(stack: Stack) -> None:
    # Few jobs, so each retries as often as its backoff allows (a long queue spaces retries out
    # by itself): every one must go past the old count to prove the old policy would lose it.
    total = 12
    env = stack.env(TASK_RETRY_BACKOFF_MAX="2", TASK_RETRY_DEADLINE_SECONDS="300")
    with stack.client() as app, stack.worker(env, concurrency=2) as worker:
        stack.pg.stop()
        down_at = time.monotonic()
        try:
            results = [
                app.send_task(
                    contract.INGEST,
                    kwargs={"title": f"o{i}", "body": "One. Two.", "external_id": f"out-{i}"},
                )
                for i in range(total)
            ]
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        finally:
            stack.pg.start()
        outage = time.monotonic() - down_at
        recovered = stack.wait_for(
            lambda: stack.sql("SELECT count(*) AS n FROM articles")[0]["n"] == total,
            120,
            "every ingest stored",
        )
        for result in results:
            assert result.get(timeout=60)["created"] is True
        assert worker.popen.poll() is None
        log = worker.log()
    # Results carry no retry count (result_extended is off): the worker's outcome lines do.
    retries = sorted(log.count(f"articles.ingest[{r.id}] retry in") for r in results)
    print(
        f"\nPostgreSQL down {outage:.1f}s (old retry window at most {OLD_WINDOW_MAX}s): all "
        f"{total} ingests stored {recovered:.1f}s after it came back; retries per job {retries}"
    )
    assert outage > OLD_WINDOW_MAX
    assert retries[0] > OLD_MAX_RETRIES, "each job went past the old count, which would give up"
    rows = stack.sql("SELECT external_id, times_processed FROM articles")
    assert sorted(r["external_id"] for r in rows) == sorted(f"out-{i}" for i in range(total))
    assert _entries(stack) == {}, "nothing dead-lettered"
