"""This test run's servers, put into the environment at import (settings are read once).

- `TEST_DATABASE_NAME` (default `articles_test`): dropped and created afresh for each run.
- `TEST_REDIS_DB` (default 11): flushed before each test.
"""

from __future__ import annotations

import os

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


def service_env(**overrides: str) -> dict[str, str]:
    """Environment for subprocesses (workers, CLI): this run's servers plus `overrides`."""
    env = dict(os.environ)
    env.update(TEST_ENV)
    env.update(overrides)
    return env
