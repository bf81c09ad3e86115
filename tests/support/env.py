"""This test run's servers, put into the environment at import (settings are read once).

- `TEST_DATABASE_NAME` (default `articles_test`): dropped and created afresh for each run.
- `TEST_REDIS_DB` (default 11): flushed before each test.
- `TEST_TRANSPORT` (`redis`, the default, or `amqp`; not `TEST_BROKER`, which
  celery.contrib.testing reads as a host name): with `amqp` the broker is the local RabbitMQ, in a
  vhost of this run's own (`articles_test_<TEST_REDIS_DB>`, recreated at the start, its
  queues purged before each test); results stay on Redis.
"""

from __future__ import annotations

import os

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("TEST_DATABASE_NAME", "articles_test")
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "11"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB_NAME}"
BROKER = os.environ.get("TEST_TRANSPORT", "redis")
if BROKER not in ("redis", "amqp"):
    raise SystemExit(f"TEST_TRANSPORT must be redis or amqp, not {BROKER!r}")
AMQP_VHOST = f"articles_test_{REDIS_DB}"
AMQP_URL = f"amqp://guest:guest@127.0.0.1:5672/{AMQP_VHOST}"
BROKER_URL = AMQP_URL if BROKER == "amqp" else REDIS_URL

TEST_ENV = {
    "DATABASE_URL": DATABASE_URL,
    "CELERY_BROKER_URL": BROKER_URL,
    "CELERY_RESULT_BACKEND": REDIS_URL,
    "ASYNC_BRIDGE": os.environ.get("ASYNC_BRIDGE", "nullpool"),
    "EXTRA_TASK_MODULES": "tests.support.tasks,examples.user_tasks",
}
os.environ.update(TEST_ENV)


def service_env(**overrides: str) -> dict[str, str]:
    """Environment for subprocesses (workers, CLI): this run's servers plus `overrides`."""
    env = dict(os.environ)
    env.update(TEST_ENV)
    env.update(overrides)
    return env
