"""Acceptance fixtures: real `celery -A worker worker` subprocesses own the queue.

The in-process worker of the integration layer is session-scoped and consumes the same queue on
the same Redis db. A test that must see its jobs run by a subprocess worker (its pool, its time
limits) asks for `subprocess_workers_only`: the in-process worker stops consuming for the test,
through Celery's own remote control, and resumes afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from articles_client import contract
from worker.runtime.app import app


@pytest.fixture
def worker_logs(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def subprocess_workers_only(
    celery_session_worker: Any, clean_db: str, clean_redis: redis.Redis
) -> Iterator[None]:
    """Clean state, and no in-process worker consuming the default queue during the test."""
    hostname = celery_session_worker.hostname
    for queue in contract.WORK_QUEUES:
        replies = app.control.cancel_consumer(queue, destination=[hostname], reply=True, timeout=10)
        assert replies, f"the in-process worker {hostname} did not answer cancel_consumer"
    try:
        yield
    finally:
        for queue in contract.WORK_QUEUES:
            app.control.add_consumer(queue, destination=[hostname], reply=True, timeout=10)
