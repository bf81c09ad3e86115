"""Container classes for pytest-celery's layer: our worker image, PostgreSQL, reachable brokers.

pytest-celery gives the test process `localhost:<published port>` URLs. Where the tests run
inside a container themselves (this CI: /.dockerenv exists), pytest-docker-tools reports the
container's own address and internal port instead, and pytest-celery keeps only the port: the
URL becomes `redis://localhost:6379`, the host's shared Redis. These classes build the URL from
the address pytest-docker-tools gives, which is right in both cases.
"""

from __future__ import annotations

import secrets
from typing import Any

from pytest_celery import (
    CeleryTestContainer,
    CeleryWorkerContainer,
    RabbitMQContainer,
    RedisContainer,
)
from pytest_docker_tools import wrappers

PG_PASSWORD = secrets.token_urlsafe(12)


class ReachableRedis(RedisContainer):
    @property
    def host_url(self) -> str:
        host, port = self.get_addr("6379/tcp")
        return f"{self.prefix()}{host}:{port}/{self.vhost}"


class ReachableRabbitMQ(RabbitMQContainer):
    @property
    def host_url(self) -> str:
        host, port = self.get_addr("5672/tcp")
        return f"{self.prefix()}{host}:{port}/{self.vhost}"


class PostgresContainer(CeleryTestContainer):
    """PostgreSQL for the worker; ready when it accepts TCP connections (after its init)."""

    def ready(self) -> bool:
        # The base check (running, on its network) without pytest-celery's log prompt: the
        # official image logs "ready to accept connections" twice, once during its init.
        if not wrappers.Container.ready(self):
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
