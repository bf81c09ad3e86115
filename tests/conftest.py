"""Shared fixtures: a real PostgreSQL database and a real Redis db number of this run's own.

The environment is set here, before any project module is imported, because settings are read
once per process. Subprocess workers inherit the same environment through `service_env`.

- `TEST_DATABASE_NAME` (default `articles_test`): dropped and created afresh for each run.
- `TEST_REDIS_DB` (default 11): flushed before each test (kombu's queue bindings are kept, so the
  in-process worker keeps consuming).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("TEST_DATABASE_NAME", "articles_test")
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "11"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB_NAME}"

TEST_ENV = {
    "DATABASE_URL": DATABASE_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "CELERY_RESULT_BACKEND": REDIS_URL,
    "ASYNC_BRIDGE": os.environ.get("ASYNC_BRIDGE", "nullpool"),
    "EXTRA_TASK_MODULES": "tests.support.tasks",
}
os.environ.update(TEST_ENV)

import celery.contrib.testing.tasks  # noqa: E402, F401 - registers celery.ping for the worker
import redis  # noqa: E402

from tests.support import database  # noqa: E402

pytest_plugins = ("celery.contrib.pytest",)


def service_env(**overrides: str) -> dict[str, str]:
    """Environment for subprocesses (workers, CLI): this run's servers plus `overrides`."""
    env = dict(os.environ)
    env.update(TEST_ENV)
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def database_url() -> str:
    """This run's own database, created empty and migrated to head."""
    asyncio.run(database.recreate(PG_ADMIN_URL, DB_NAME))
    from db.migrate import upgrade

    upgrade(DATABASE_URL)
    return DATABASE_URL


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
def clean_redis(redis_client: redis.Redis) -> redis.Redis:
    """Delete this db's keys before the test, except kombu's queue bindings."""
    database.flush_redis(redis_client)
    return redis_client


@pytest.fixture(scope="session")
def celery_session_app(database_url: str) -> Any:
    """The real application, configured from this run's environment."""
    from worker import app

    app.set_current()
    return app


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, Any]:
    return {"queues": ("celery",), "shutdown_timeout": 30}


@pytest.fixture
def live_worker(celery_session_worker: Any, clean_db: str, clean_redis: redis.Redis) -> Any:
    """An in-process worker (solo pool, in a thread) on real Redis and PostgreSQL, clean state."""
    return celery_session_worker
