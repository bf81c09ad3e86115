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
    default_rabbitmq_broker_cls,
    default_rabbitmq_broker_env,
    default_rabbitmq_broker_ports,
    default_redis_backend_cls,
    default_redis_backend_command,
    default_redis_backend_env,
    default_redis_backend_ports,
    default_redis_broker_cls,
    default_redis_broker_command,
    default_redis_broker_env,
    default_redis_broker_ports,
)
from pytest_docker_tools import container, fxtr

from articles_client import contract
from tests.compose.images import POSTGRES_IMAGE, RABBITMQ_IMAGE, REDIS_IMAGE, WORKER_IMAGE
from tests.compose.stack import ROOT
from tests.compose.vendors import (
    PG_PASSWORD,
    ArticlesWorkerContainer,
    PostgresContainer,
    ReachableRabbitMQ,
    ReachableRedis,
)

pytestmark = [pytest.mark.compose, pytest.mark.timeout(900)]

RESULT_TIMEOUT = 60


@pytest.fixture(scope="session", autouse=True)
def _engine_first(docker_engine: None) -> None:
    """Skip, saying why, before pytest-docker-tools asks a missing engine for anything."""


@pytest.fixture(autouse=True)
def _urls_from_the_setup_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Celery prefers CELERY_BROKER_URL / CELERY_RESULT_BACKEND from the environment over an app's
    # own configuration, and the test run exports its host servers there: without this, the setup
    # app would publish to the host's Redis instead of the broker container.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)


@pytest.fixture(autouse=True)
def container_volumes() -> Iterator[list[str]]:
    """Names of the anonymous volumes of this test's containers, removed after the containers.

    pytest-docker-tools removes its containers without their volumes, and the images declare
    VOLUME (as the official ones do). Set up first, so torn down after the containers.
    """
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)


def remember_volumes(names: list[str], *containers: CeleryTestContainer) -> None:
    for node in containers:
        names += [m["Name"] for m in node.attrs["Mounts"] if m["Type"] == "volume"]


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


# The broker and backend containers of pytest-celery, with URLs the test process can reach.
default_redis_broker = container(
    image="{default_redis_broker_image}",
    ports=fxtr("default_redis_broker_ports"),
    environment=fxtr("default_redis_broker_env"),
    network="{default_pytest_celery_network.name}",
    wrapper_class=ReachableRedis,
    timeout=60,
    command=fxtr("default_redis_broker_command"),
)
default_redis_backend = container(
    image="{default_redis_backend_image}",
    ports=fxtr("default_redis_backend_ports"),
    environment=fxtr("default_redis_backend_env"),
    network="{default_pytest_celery_network.name}",
    wrapper_class=ReachableRedis,
    timeout=60,
    command=fxtr("default_redis_backend_command"),
)
default_rabbitmq_broker = container(
    image="{default_rabbitmq_broker_image}",
    ports=fxtr("default_rabbitmq_broker_ports"),
    environment=fxtr("default_rabbitmq_broker_env"),
    network="{default_pytest_celery_network.name}",
    wrapper_class=ReachableRabbitMQ,
    timeout=120,
)

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
    celery_worker_cluster_config: dict[str, Any],
    articles_postgres: PostgresContainer,
    container_volumes: list[str],
) -> dict[str, str]:
    env = ArticlesWorkerContainer.initial_env(celery_worker_cluster_config)
    env["DATABASE_URL"] = articles_postgres.database_url
    remember_volumes(container_volumes, articles_postgres)
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
def celery_broker_cluster(
    request: pytest.FixtureRequest, container_volumes: list[str]
) -> Iterator[CeleryBrokerCluster]:
    """Each test runs once with a Redis broker and once with RabbitMQ."""
    broker: RedisTestBroker | RabbitMQTestBroker = request.getfixturevalue(
        f"celery_{request.param}_broker"
    )
    refuse_shared_servers(broker.container.host_url)
    remember_volumes(container_volumes, broker.container)
    cluster = CeleryBrokerCluster(broker)
    yield cluster
    cluster.teardown()


@pytest.fixture
def celery_backend_cluster(
    celery_redis_backend: RedisTestBackend, container_volumes: list[str]
) -> Iterator[CeleryBackendCluster]:
    refuse_shared_servers(celery_redis_backend.container.host_url)
    remember_volumes(container_volumes, celery_redis_backend.container)
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


def refuse_shared_servers(url: str) -> None:
    """Stop before a URL of the host's shared Redis or RabbitMQ reaches the setup app."""
    if any(
        f"{host}:{port}/" in url for host in ("localhost", "127.0.0.1") for port in (6379, 5672)
    ):
        pytest.fail(f"pytest-celery would use the host's shared server: {url}", pytrace=False)


def send(setup: CeleryTestSetup, name: str, **kwargs: Any) -> Any:
    """Send a public task by name with JSON keyword arguments; wait for its result."""
    return setup.app.send_task(name, kwargs=kwargs).get(timeout=RESULT_TIMEOUT)


def test_the_public_tasks_run_on_the_containerised_worker(celery_setup: CeleryTestSetup) -> None:
    """One test per broker: each setup starts five containers, the slow part of this layer."""
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

    # A bad payload fails at once, with a message that names the field.
    bad = celery_setup.app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": "x"})
    with pytest.raises(Exception, match="article_id"):
        bad.get(timeout=RESULT_TIMEOUT)
    assert bad.state == "FAILURE"
