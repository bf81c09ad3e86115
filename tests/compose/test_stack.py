"""The whole docker-compose stack, as a user runs it: up, work, crashes, restarts, scale, down.

One project for the module (building and starting it is the slow part); each test starts from
300 freshly seeded articles. Work is enqueued from inside the stack, with the image's own
`articles` command and producer, as another service on the compose network would.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.compose.stack import (
    ComposeStack,
    fault_mid_run,
    health,
    wait_for,
)

pytestmark = [pytest.mark.compose, pytest.mark.timeout(600)]

ARTICLES = 300
APP_SERVICES = ("migrate", "worker", "worker-pipeline", "beat", "outbox-relay", "flower")


@pytest.fixture(scope="module")
def stack(standin_images: str) -> Iterator[ComposeStack]:
    """`docker-compose up -d --build` of a uniquely named project; `down -v` whatever happens."""
    project = ComposeStack(project=f"articles_test_{secrets.token_hex(4)}")
    try:
        project.compose("up", "-d", "--build", timeout=1500)
        yield project
    finally:
        project.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)


@pytest.mark.timeout(1800)  # the first test pays for building the images and starting the stack
def test_every_service_is_healthy_and_migrate_completed(stack: ComposeStack) -> None:
    # Both workers and beat report through files they touch (no broadcast ping); the relay has
    # no health check of its own.
    healthy = ("postgres", "redis", "worker", "worker-pipeline", "beat", "flower")
    for service in healthy:
        wait_for(f"{service} healthy", lambda s=service: health(stack, s) == "healthy", 180)
    assert health(stack, "outbox-relay") == "running"
    migrate = stack.inspect(stack.container_ids("migrate")[0])["State"]
    assert isinstance(migrate, dict)
    assert (migrate["Status"], migrate["ExitCode"]) == ("exited", 0)


def test_a_pipeline_run_from_inside_the_stack_processes_every_article(
    stack: ComposeStack,
) -> None:
    stack.reset_articles(ARTICLES)
    out = stack.exec(
        "worker", "articles", "enqueue", "pipeline", "--wait", "--json", "--timeout", "300"
    )
    outcome = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert (outcome["claimed"], outcome["succeeded"], outcome["failed"]) == (ARTICLES, ARTICLES, 0)
    assert stack.status_counts() == {"done": ARTICLES}
    assert stack.times_processed() == {1: ARTICLES}


def test_flower_answers_with_auth_and_refuses_without(stack: ComposeStack) -> None:
    url = f"{stack.flower_url}/api/workers?refresh=1"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code == 401

    token = b64encode(f"admin:{stack.flower_password}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        workers = json.load(answer)
    assert answer.status == 200
    assert any(name.startswith("celery@") for name in workers)


def test_app_containers_run_as_a_non_root_user(stack: ComposeStack) -> None:
    for service in APP_SERVICES:
        config = stack.inspect(stack.container_ids(service)[0])["Config"]
        assert isinstance(config, dict)
        assert config["User"] == "app", service
    for service in APP_SERVICES[1:]:  # migrate has exited
        assert stack.exec(service, "id", "-u").strip() != "0", service


def test_a_killed_worker_loses_nothing(stack: ComposeStack) -> None:
    fault_mid_run(stack, ARTICLES, "kill", "worker")  # SIGKILL: no warm shutdown, no acks
    stack.compose("up", "-d", "worker")
    # The killed worker's unacked messages come back after the visibility timeout (30 s here).
    stack.wait_all_done(ARTICLES, timeout=240)
    assert stack.times_processed() == {1: ARTICLES}


def test_a_redis_restart_loses_nothing(stack: ComposeStack) -> None:
    # The queued messages exist only in Redis: the append-only file carries them over.
    fault_mid_run(stack, ARTICLES, "restart", "redis")
    stack.wait_all_done(ARTICLES, timeout=240)
    assert stack.times_processed() == {1: ARTICLES}


def test_three_workers_share_the_work_and_process_each_article_once(
    stack: ComposeStack,
) -> None:
    stack.compose("up", "-d", "--scale", "worker=3")
    workers = stack.container_ids("worker")
    assert len(workers) == 3
    # worker-pipeline answers too: wait for the three of this service by their node names.
    nodes = {f"celery@{stack.inspect(w)['Config']['Hostname']}" for w in workers}
    wait_for(
        "three workers answering ping",
        lambda: nodes <= json.loads(_ping(stack) or "{}").keys(),
        timeout=180,
        every=3,
    )
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1)
    stack.reset_articles(ARTICLES)
    stack.enqueue_each(stack.article_ids())
    stack.wait_all_done(ARTICLES, timeout=240)
    assert stack.times_processed() == {1: ARTICLES}

    succeeded = {
        worker: sum(
            1
            for line in stack.logs_since(worker, since).splitlines()
            if "articles.process_article[" in line and " succeeded in " in line
        )
        for worker in workers
    }
    # At least one task per article (a message of the Redis test, redelivered late, may add a
    # no-op run); exactly-once effects are what times_processed checks above.
    assert sum(succeeded.values()) >= ARTICLES, succeeded
    assert all(count > 0 for count in succeeded.values()), succeeded


def _ping(stack: ComposeStack) -> str | None:
    try:
        out = stack.exec(
            "worker", "celery", "-A", "worker", "inspect", "ping", "--json", timeout=60
        )
    except AssertionError:
        return None
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return lines[-1] if lines else None
