"""The compose stack with RabbitMQ as the broker (docker-compose.rabbitmq.yml over the base file).

Fewer checks than the Redis stack: the same images and tasks, a different broker. A killed
worker's unacked messages come back as soon as its channel closes, not after a timeout.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from tests.compose.stack import (
    ComposeStack,
    fault_mid_run,
    health,
    wait_for,
)
from tests.compose.test_stack import ARTICLES

pytestmark = [pytest.mark.compose, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def rabbit_stack(standin_images: str) -> Iterator[ComposeStack]:
    project = ComposeStack(
        project=f"articles_test_{secrets.token_hex(4)}",
        overrides=("docker-compose.rabbitmq.yml",),
    )
    try:
        project.compose("up", "-d", "--build", timeout=1500)
        yield project
    finally:
        project.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)


@pytest.mark.timeout(1800)  # pays for starting the stack
def test_the_rabbitmq_stack_is_healthy_and_runs_a_pipeline(rabbit_stack: ComposeStack) -> None:
    for service in ("postgres", "redis", "rabbitmq", "worker", "flower"):
        wait_for(f"{service} healthy", lambda s=service: health(rabbit_stack, s) == "healthy", 180)
    rabbit_stack.reset_articles(ARTICLES)
    out = rabbit_stack.exec(
        "worker", "articles", "enqueue", "pipeline", "--wait", "--json", "--timeout", "300"
    )
    outcome = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert (outcome["claimed"], outcome["succeeded"]) == (ARTICLES, ARTICLES)
    assert rabbit_stack.times_processed() == {1: ARTICLES}


def test_a_killed_worker_loses_nothing_on_rabbitmq(rabbit_stack: ComposeStack) -> None:
    fault_mid_run(rabbit_stack, ARTICLES, "kill", "worker")
    rabbit_stack.compose("up", "-d", "worker")
    rabbit_stack.wait_all_done(ARTICLES, timeout=240)
    assert rabbit_stack.times_processed() == {1: ARTICLES}
