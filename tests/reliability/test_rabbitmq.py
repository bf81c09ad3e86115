"""RabbitMQ as the broker, on a private node of this module's own (results on a private Redis):
a SIGKILLed worker loses nothing, countdown retries travel through quorum queues, and the
server's consumer_timeout must exceed the longest task.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from articles_client import contract, queues
from tests.reliability.conftest import Stack, amqp_only
from tests.support.rabbitmq import PrivateRabbit

# The broker-agnostic reliability tests run on RabbitMQ in the RabbitMQ pass; these are about
# RabbitMQ's own machinery (quorum queues, delayed delivery, consumer_timeout).
pytestmark = [pytest.mark.reliability, amqp_only("quorum queues and server settings")]

TASKS = "tests.support.tasks,tests.support.amqp_tasks"
ARTICLES = str(Path(sys.executable).with_name("articles"))


@pytest.fixture
def rabbit(stack: Stack) -> PrivateRabbit:
    assert stack.rabbit is not None  # amqp_only
    return stack.rabbit


def _set_consumer_timeout(rabbit: PrivateRabbit, ms: int) -> None:
    # Applies to channels opened from now on: set it before the worker starts.
    done = rabbit.ctl("eval", f"application:set_env(rabbit, consumer_timeout, {ms}).")
    assert done.returncode == 0, done.stderr


@dataclass
class AmqpStack:
    """The reliability stack with a private RabbitMQ vhost as its broker."""

    stack: Stack
    broker_url: str

    def env(self, **overrides: str) -> dict[str, str]:
        return self.stack.env(
            CELERY_BROKER_URL=self.broker_url, EXTRA_TASK_MODULES=TASKS, **overrides
        )

    @contextlib.contextmanager
    def client(self) -> Iterator[Celery]:
        """A client app on this broker. Celery prefers CELERY_RESULT_BACKEND from the environment
        (which names the shared Redis) to its configuration: point it here while in use."""
        saved = os.environ.get("CELERY_RESULT_BACKEND")
        os.environ["CELERY_RESULT_BACKEND"] = self.stack.redis.url()
        app = Celery("amqp-reliability-client", set_as_current=False)
        app.conf.update(
            broker_url=self.broker_url,
            broker_write_url=self.broker_url,
            result_backend=self.stack.redis.url(),
            task_serializer="json",
            accept_content=["json"],
            task_queues=queues.task_queues(self.broker_url),
            task_routes=queues.task_routes(),
            broker_transport_options={"confirm_publish": True},
        )
        try:
            yield app
        finally:
            app.close()
            if saved is None:
                os.environ.pop("CELERY_RESULT_BACKEND", None)
            else:
                os.environ["CELERY_RESULT_BACKEND"] = saved


@pytest.fixture
def amqp(stack: Stack) -> AmqpStack:
    # The RabbitMQ pass gives every test a vhost of its own on the session's private node.
    return AmqpStack(stack=stack, broker_url=stack.broker_url)


def test_worker_killed_mid_run_every_article_done_once(amqp: AmqpStack) -> None:
    stack, total = amqp.stack, 1000
    stack.add_articles(total)
    # Beat's pipeline ticks pick up the rows the reaper returns once the redelivered runs are over.
    # Limits long enough that a redelivered run does real work on a loaded machine; the lease
    # must exceed the hard limit (checked at start), so stranded rows wait 30 s.
    env = amqp.env(
        PIPELINE_INTERVAL_SECONDS="2",
        TASK_SOFT_TIME_LIMIT="20",
        TASK_TIME_LIMIT="25",
        CLAIM_LEASE_SECONDS="30",
        BROKER_VISIBILITY_TIMEOUT="40",
    )
    with amqp.client() as client, stack.worker(env, name="doomed", concurrency=2) as doomed:
        for _ in range(2):
            client.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 10})
        stack.wait_for(lambda: stack.counts().get("done", 0) >= total // 4, 60, "a quarter done")
        doomed.kill()
        killed_at = time.monotonic()
    at_kill = stack.counts()
    # RabbitMQ returns the killed worker's unacked run messages as soon as its connection drops;
    # the claimed rows come back through the lease (fold-in or reaper) when the runs are redone.
    with stack.beat(env), stack.worker(env, name="survivor"):
        stack.wait_for(stack.all_done(total), 150, "every article done", detail=stack.counts)
        recovered = time.monotonic() - killed_at
    print(f"\nRabbitMQ: at SIGKILL {at_kill}; all {total} done {recovered:.1f}s after the kill")
    assert stack.counts() == {"done": total}
    assert stack.times_processed() == {1: total}


def test_a_countdown_retry_travels_through_a_quorum_queue(amqp: AmqpStack) -> None:
    with amqp.client() as client, amqp.stack.worker(amqp.env(), name="retrier") as worker:
        sent_at = time.time()
        result = client.send_task("tests.retry_once", kwargs={"countdown": 2})
        outcome: dict[str, Any] = result.get(timeout=60)
        log = worker.log()
    waited = outcome["finished_at"] - sent_at
    print(f"\nretry with countdown 2 s on a quorum queue ran after {waited:.1f}s")
    assert outcome["retries"] == 1
    assert waited >= 2
    # Native delayed delivery (topic exchanges), not an ETA held in the worker's memory: the
    # retry arrives as a new delivery after the countdown.
    assert log.count("Task tests.retry_once[") >= 2
    assert "Direct exchanges are not supported with native delayed delivery" not in log


def test_consumer_timeout_must_exceed_the_task_time_limit(
    amqp: AmqpStack, rabbit: PrivateRabbit
) -> None:
    # With consumer_timeout at 5 s, a late-acked task that holds its message longer makes
    # RabbitMQ close the channel with PRECONDITION_FAILED, and Celery cannot recover from that:
    # the worker exits. Hence the rule: consumer_timeout above TASK_TIME_LIMIT (README).
    _set_consumer_timeout(rabbit, 5000)
    env = amqp.env(
        TASK_SOFT_TIME_LIMIT="20",
        TASK_TIME_LIMIT="25",
        CLAIM_LEASE_SECONDS="30",
        BROKER_VISIBILITY_TIMEOUT="30",
    )
    with amqp.client() as client:
        result = client.send_task("tests.sleep", kwargs={"seconds": 8})
        with amqp.stack.worker(env, name="too-short", concurrency=1) as worker:
            worker.wait_for_log("delivery acknowledgement on channel 1 timed out", timeout=60)
            worker.popen.wait(timeout=60)
        assert worker.popen.returncode != 0

        # With the rule applied the requeued message runs once more, to the end, and the worker
        # stays up. (Set at runtime: channels opened from now on get the new value.)
        _set_consumer_timeout(rabbit, 60_000)  # above TASK_TIME_LIMIT (25 s here)
        with amqp.stack.worker(env, name="long-enough", concurrency=1) as survivor:
            assert result.get(timeout=120) == 8
            assert survivor.popen.poll() is None
            assert "PRECONDITION_FAILED" not in survivor.log()
    _set_consumer_timeout(rabbit, 1_800_000)  # the server default, for the tests after this one
    print("\nconsumer_timeout 5 s < 8 s task: worker exited; 60 s: the task completed")


def test_a_poison_job_on_rabbitmq_ends_in_the_dead_letter_store(amqp: AmqpStack) -> None:
    # RabbitMQ with Redis results: dead letters and delivery counters live in the result
    # backend's Redis (docs/design.md, section 2), and `articles dead-letters list` reads them.
    env = amqp.env(MAX_DELIVERIES="3")
    with amqp.client() as client, amqp.stack.worker(env, concurrency=2) as worker:
        poison = client.send_task("tests.crash")
        after = [
            client.send_task(contract.INGEST, kwargs={"title": f"after {i}", "body": "One. Two."})
            for i in range(10)
        ]
        for result in after:
            assert result.get(timeout=90)["created"] is True
        listing: list[dict[str, Any]] = []

        def listed() -> bool:
            done = subprocess.run(
                [ARTICLES, "dead-letters", "list", "--json"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            listing[:] = json.loads(done.stdout)
            return any(entry["task_id"] == poison.id for entry in listing)

        took = amqp.stack.wait_for(listed, 120, "the poison job listed as a dead letter")
        assert worker.popen.poll() is None
    (entry,) = [e for e in listing if e["task_id"] == poison.id]
    print(
        f"\nRabbitMQ: poison job dead-lettered and listed {took:.1f}s after the ingests were done"
    )
    assert entry["task"] == "tests.crash"
    assert entry["error"]["type"] == "PoisonJob"
    assert entry["deliveries"] == 4


def _articles(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [ARTICLES, *args], env=env, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_with_database_results_dead_letters_live_in_rabbitmq(
    amqp: AmqpStack, tmp_path: Path
) -> None:
    # RabbitMQ with results in a database: no Redis anywhere. Dead letters go to the queue
    # articles.dead_letters, and a crashing job is capped by the quorum queue's delivery count.
    env = amqp.env(CELERY_RESULT_BACKEND=f"db+sqlite:///{tmp_path / 'results.db'}")
    with amqp.client() as client, amqp.stack.worker(env, concurrency=2) as worker:
        poison = client.send_task("tests.crash", queue="articles.process")
        bad = client.send_task(contract.INGEST, kwargs={"title": "no body"})
        for i in range(5):
            client.send_task(contract.INGEST, kwargs={"title": f"after {i}", "body": "One. Two."})
        listing: dict[str, dict[str, Any]] = {}
        ids: list[str] = []

        def listed() -> bool:
            found = json.loads(_articles(env, "dead-letters", "list", "--json"))
            ids[:] = [entry["task_id"] for entry in found]
            listing.clear()
            listing.update((entry["task_id"], entry) for entry in found)
            return {poison.id, bad.id} <= set(listing)

        took = amqp.stack.wait_for(listed, 240, "both jobs listed as dead letters", interval=1)
        articles = amqp.stack.sql("SELECT count(*) AS n FROM articles")[0]["n"]
        first_failed = listing[bad.id]["first_failed_at"]
        # Replayed by id (same task id; the entry goes), it fails again: one entry again.
        assert "1 dead letter(s) replayed" in _articles(env, "dead-letters", "replay", bad.id)
        amqp.stack.wait_for(lambda: listed() and listing[bad.id]["last_failed_at"] > first_failed,
                            60, "the replayed job dead-lettered again", interval=1)  # fmt: skip
        assert worker.popen.poll() is None
        status = json.loads(_articles(env, "status", "--json"))
        assert "2 dead letter(s) purged" in _articles(env, "dead-letters", "purge", "--all")
        assert json.loads(_articles(env, "dead-letters", "list", "--json")) == []
        log = worker.log()
    print(f"\nRabbitMQ + database results: both jobs dead-lettered in RabbitMQ within {took:.1f}s")
    assert articles == 5
    assert status["dead_letters"] == 2
    assert listing[poison.id]["task"] == "tests.crash"
    assert listing[poison.id]["error"]["type"] == "PoisonJob"
    assert listing[poison.id]["deliveries"] == 11  # the quorum backstop: 10 deliveries allowed
    assert listing[bad.id]["error"]["type"] == "InvalidPayload"
    assert sorted(ids) == sorted([poison.id, bad.id])
    assert "dead-lettered instead of run" in log
    # Nothing of it in Redis: the test's private Redis was never written to.
    with amqp.stack.redis.client() as redis_client:
        assert redis_client.dbsize() == 0
