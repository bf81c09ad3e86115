"""pytest-celery's container layer: the public tasks on this project's worker image.

`celery_setup` (pytest-celery 1.x) starts a broker and a Redis result backend in containers, and
the worker in a container of our own image, next to a PostgreSQL container; the tests send the
public tasks by name, as any other service would, and read their JSON results.

pytest-celery's plugin stays disabled (`-p no:celery` in pyproject): it re-exports
`celery.contrib.pytest` and then replaces `celery_worker` with its Docker worker, which would take
the in-process worker away from the integration tests. Its fixtures are imported here instead,
so they exist in this module only. The vendor images are the names docker-compose.yml uses, which
on a machine without a registry are the stand-ins of docker/standins.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from pytest_celery import (
    CeleryBackendCluster,
    CeleryBrokerCluster,
    CeleryTestContainer,
    CeleryTestSetup,
    CeleryTestWorker,
    CeleryWorkerCluster,
    CeleryWorkerContainer,
    RabbitMQTestBroker,
    RedisTestBackend,
    RedisTestBroker,
    celery_backend_cluster_config,
    celery_broker_cluster_config,
    celery_rabbitmq_broker,
    celery_redis_backend,
    celery_redis_broker,
    celery_setup,
    celery_setup_app,
    celery_setup_cls,
    celery_setup_config,
    celery_setup_name,
    celery_worker_cluster_config,
    default_pytest_celery_network,
    default_rabbitmq_broker,
    default_rabbitmq_broker_cls,
    default_rabbitmq_broker_env,
    default_rabbitmq_broker_ports,
    default_redis_backend,
    default_redis_backend_cls,
    default_redis_backend_command,
    default_redis_backend_env,
    default_redis_backend_ports,
    default_redis_broker,
    default_redis_broker_cls,
    default_redis_broker_command,
    default_redis_broker_env,
    default_redis_broker_ports,
)
from pytest_docker_tools import container, fxtr

from articles_client import contract
from tests.compose.images import POSTGRES_IMAGE, RABBITMQ_IMAGE, REDIS_IMAGE, WORKER_IMAGE
from tests.compose.stack import ROOT

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

PG_PASSWORD = secrets.token_urlsafe(12)
RESULT_TIMEOUT = 60


class PostgresContainer(CeleryTestContainer):
    """PostgreSQL for the worker; ready when it accepts TCP connections (after its init)."""

    def ready(self) -> bool:
        if self.status != "running":
            return False
        code, _ = self.exec_run(["pg_isready", "-h", "127.0.0.1", "-U", "articles"])
        return bool(code == 0)

    @property
    def database_url(self) -> str:
        host = self.attrs["Config"]["Hostname"]
        return f"postgresql+asyncpg://articles:{PG_PASSWORD}@{host}:5432/articles"


class ArticlesWorkerContainer(CeleryWorkerContainer):
    """Our worker image, migrating its database first, with its own app and settings."""

    @classmethod
    def worker_name(cls) -> str:
        return "articles"

    @classmethod
    def command(cls, *args: str, **kwargs: Any) -> list[str]:
        worker = f"celery -A worker worker -l INFO -c 2 -n {cls.worker_name()}@%h"
        return ["sh", "-c", f"articles db upgrade && exec {worker}"]


@pytest.fixture(scope="session")
def articles_worker_image(standin_images: str) -> str:
    """Build the project's image (the same one compose builds; cached layers after the first)."""
    subprocess.run(
        ["docker", "build", "-q", "-t", WORKER_IMAGE, str(ROOT)],
        check=True,
        capture_output=True,
        timeout=1500,
    )
    return WORKER_IMAGE


@pytest.fixture(scope="session")
def postgres_image(standin_images: str) -> str:
    return POSTGRES_IMAGE


@pytest.fixture
def default_redis_broker_image(standin_images: str) -> str:
    return REDIS_IMAGE


@pytest.fixture
def default_redis_backend_image(standin_images: str) -> str:
    return REDIS_IMAGE


@pytest.fixture
def default_rabbitmq_broker_image(standin_images: str) -> str:
    return RABBITMQ_IMAGE


articles_postgres = container(
    image="{postgres_image}",
    environment={
        "POSTGRES_USER": "articles",
        "POSTGRES_PASSWORD": PG_PASSWORD,
        "POSTGRES_DB": "articles",
    },
    network="{default_pytest_celery_network.name}",
    wrapper_class=PostgresContainer,
    timeout=120,
)


@pytest.fixture
def articles_worker_env(
    celery_worker_cluster_config: dict[str, Any], articles_postgres: PostgresContainer
) -> dict[str, str]:
    env = ArticlesWorkerContainer.initial_env(celery_worker_cluster_config)
    env["DATABASE_URL"] = articles_postgres.database_url
    return env


articles_worker_container = container(
    image="{articles_worker_image}",
    environment=fxtr("articles_worker_env"),
    network="{default_pytest_celery_network.name}",
    wrapper_class=ArticlesWorkerContainer,
    timeout=180,
    command=ArticlesWorkerContainer.command(),
)


@pytest.fixture(params=["redis", "rabbitmq"])
def celery_broker_cluster(request: pytest.FixtureRequest) -> Iterator[CeleryBrokerCluster]:
    """Each test runs once with a Redis broker and once with RabbitMQ."""
    broker: RedisTestBroker | RabbitMQTestBroker = request.getfixturevalue(
        f"celery_{request.param}_broker"
    )
    cluster = CeleryBrokerCluster(broker)
    yield cluster
    cluster.teardown()


@pytest.fixture
def celery_backend_cluster(
    celery_redis_backend: RedisTestBackend,
) -> Iterator[CeleryBackendCluster]:
    cluster = CeleryBackendCluster(celery_redis_backend)
    yield cluster
    cluster.teardown()


@pytest.fixture
def celery_worker_cluster(
    articles_worker_container: ArticlesWorkerContainer, celery_setup_app: Celery
) -> Iterator[CeleryWorkerCluster]:
    worker = CeleryTestWorker(container=articles_worker_container, app=celery_setup_app)
    cluster = CeleryWorkerCluster(worker)
    yield cluster
    cluster.teardown()


def send(setup: CeleryTestSetup, name: str, **kwargs: Any) -> Any:
    """Send a public task by name with JSON keyword arguments; wait for its result."""
    return setup.app.send_task(name, kwargs=kwargs).get(timeout=RESULT_TIMEOUT)


def test_the_public_tasks_run_on_the_containerised_worker(celery_setup: CeleryTestSetup) -> None:
    assert celery_setup.ready(ping=False, control=True, docker=True)
    ids = [
        send(celery_setup, contract.INGEST, title=f"Article {n}", body="word " * (50 + n))[
            "article_id"
        ]
        for n in range(3)
    ]
    assert len(set(ids)) == 3

    processed = send(celery_setup, contract.PROCESS_ARTICLE, article_id=ids[0])
    assert (processed["article_id"], processed["status"]) == (ids[0], "done")

    run = send(celery_setup, contract.RUN_PIPELINE, batch_size=10)
    assert (run["claimed"], run["succeeded"], run["failed"]) == (2, 2, 0)
    celery_setup.worker.assert_log_exists(f"{contract.RUN_PIPELINE}[")


def test_a_bad_payload_fails_with_a_message_naming_the_field(
    celery_setup: CeleryTestSetup,
) -> None:
    result = celery_setup.app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": "x"})
    with pytest.raises(Exception, match="article_id"):
        result.get(timeout=RESULT_TIMEOUT)
    assert result.state == "FAILURE"
