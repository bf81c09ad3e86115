"""Shared fixtures: a real PostgreSQL database and a real Redis db number of this run's own.

Subprocess workers get the same environment through `tests.support.env.service_env`.

- `TEST_DATABASE_NAME` (default `articles_test`): dropped and created afresh for each run.
- `TEST_REDIS_DB` (default 11): flushed before each test (kombu's queue bindings are kept, so the
  in-process worker keeps consuming).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import celery.contrib.testing.tasks  # noqa: F401 - registers celery.ping for the worker
import pytest
import redis

# Importing tests.support.env puts this run's servers into the environment; project modules
# read settings lazily, in the fixtures below, so they see it.
from tests.support import database, rabbitmq
from tests.support.env import (
    AMQP_VHOST,
    BROKER,
    BROKER_URL,
    DATABASE_URL,
    DB_NAME,
    PG_ADMIN_URL,
    REDIS_URL,
)

pytest_plugins = ("celery.contrib.pytest",)


@pytest.fixture(scope="session")
def database_url() -> str:
    """This run's own database, created empty and migrated to head."""
    asyncio.run(database.recreate(PG_ADMIN_URL, DB_NAME))
    from db.migrate import upgrade

    upgrade(DATABASE_URL)
    return DATABASE_URL


@pytest.fixture(scope="session")
def broker_url() -> str:
    """This run's broker: Redis (its db number), or a RabbitMQ vhost of its own, made empty.

    Emptied before the session's worker starts: messages a killed earlier run left queued would
    otherwise be consumed by it between one test's cleanup and its first step (seen in CI: two
    stray ingests added two articles to a test that counts them)."""
    if BROKER == "amqp":
        rabbitmq.recreate_vhost(AMQP_VHOST)
    else:
        client = redis.Redis.from_url(BROKER_URL)
        client.flushdb()
        client.close()
    return BROKER_URL


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def clean_db(database_url: str) -> str:
    """Empty tables before the test (identities restarted)."""
    asyncio.run(database.truncate(database_url))
    return database_url


@pytest.fixture
def clean_redis(redis_client: redis.Redis, broker_url: str) -> redis.Redis:
    """Delete this db's keys before the test, except kombu's queue bindings; on RabbitMQ, purge
    this run's queues too."""
    database.flush_redis(redis_client)
    if BROKER == "amqp":
        rabbitmq.purge(broker_url)
    return redis_client


@pytest.fixture(scope="session")
def celery_session_app(database_url: str, broker_url: str) -> Any:
    """The real application, configured from this run's environment."""
    from worker import app

    app.set_current()
    return app


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, Any]:
    from articles_client import contract

    return {"queues": contract.WORK_QUEUES, "shutdown_timeout": 30}


@pytest.fixture
def live_worker(celery_session_worker: Any, clean_db: str, clean_redis: redis.Redis) -> Any:
    """An in-process worker (solo pool, in a thread) on real Redis and PostgreSQL, clean state."""
    return celery_session_worker
