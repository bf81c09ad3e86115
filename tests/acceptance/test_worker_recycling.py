"""Recycled prefork children (WORKER_MAX_TASKS_PER_CHILD, WORKER_MAX_MEMORY_PER_CHILD) close their
`loop` bridge on the way out: the connection each one held is gone from pg_stat_activity, and the
worker's log shows no warning about an unclosed connection or a closed loop."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.test_bridge_loop_workers import BAD_ANYWHERE
from tests.integration.helpers import sql
from tests.support.env import service_env
from tests.support.processes import celery_worker
from worker.runtime.app import app

pytestmark = pytest.mark.acceptance

QUEUE = "recycling-tests"
TASKS = 12


def backends_alive(pids: set[int]) -> set[int]:
    rows = sql("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)", pids=list(pids))
    return {int(r["pid"]) for r in rows}


@pytest.mark.parametrize(
    "limit",
    [
        {"WORKER_MAX_TASKS_PER_CHILD": "4"},
        # 1 MiB: below any child's resident memory, so every child is replaced after its task.
        {"WORKER_MAX_MEMORY_PER_CHILD": "1024"},
    ],
    ids=["max-tasks", "max-memory"],
)
def test_recycled_children_close_their_bridge(
    limit: dict[str, str], clean_db: str, clean_redis: Any, tmp_path: Path
) -> None:
    env = service_env(ASYNC_BRIDGE="loop", **limit)
    used: dict[int, set[int]] = defaultdict(set)
    with celery_worker(env, tmp_path, concurrency=2, extra_args=("-Q", QUEUE)) as worker:
        for _ in range(TASKS):  # one at a time, so each child's share is predictable
            value = app.send_task("tests.backend_pid", queue=QUEUE).get(timeout=60)
            used[value["worker_pid"]].add(value["backend_pid"])
        current = set(worker.children())
        retired = {b for pid, backends in used.items() if pid not in current for b in backends}
        deadline = time.monotonic() + 10
        while backends_alive(retired) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = backends_alive(retired)
        # From ready to shutdown: the recycling happens there (kombu warns about its RabbitMQ
        # exchanges at start-up, which is not ours to judge here).
        log = worker.log().split(" ready.", 1)[-1].split("Warm shutdown")[0]

    assert len(used) > 2, f"children were not recycled: {dict(used)}"
    # One pooled connection per child, reused for all its tasks.
    assert all(len(backends) == 1 for backends in used.values())
    assert retired, "no retired child's connection to check"
    assert left == set(), f"connections of retired children still open: {left}"
    # Each retired child closed its bridge itself (its socket was not merely dropped at exit).
    closed = log.count("database connections closed")
    assert closed >= len(used) - len(current), log[-3000:]
    bad = [line for line in log.splitlines() if any(word in line for word in BAD_ANYWHERE)]
    bad += [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert bad == []
