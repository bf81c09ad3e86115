"""Health checks without a broadcast: the worker's consumer keeps WORKER_ALIVE_FILE fresh while it
runs and removes it when it stops; beat touches `<schedule>.alive` on every tick."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import service_env
from tests.support.processes import celery_beat, celery_worker

pytestmark = pytest.mark.acceptance


def age(path: Path) -> float:
    return time.time() - path.stat().st_mtime


def test_worker_keeps_its_alive_file_fresh_and_removes_it_at_stop(
    clean_redis: Any, tmp_path: Path
) -> None:
    alive = tmp_path / "worker.alive"
    env = service_env(WORKER_ALIVE_FILE=str(alive))
    with celery_worker(env, tmp_path, concurrency=1, extra_args=("-Q", "health-tests")):
        assert alive.exists()
        first = alive.stat().st_mtime
        time.sleep(12)  # past one touch interval (10 s)
        assert alive.stat().st_mtime > first
        assert age(alive) < 11
    assert not alive.exists()


def test_beat_touches_its_alive_file_on_every_tick(clean_redis: Any, tmp_path: Path) -> None:
    env = service_env(BEAT_LOCK_TTL="3")  # ticks at least every second
    schedule = tmp_path / "beat.db"
    with celery_beat(env, tmp_path, schedule):
        alive = Path(f"{schedule}.alive")
        deadline = time.monotonic() + 10
        while not alive.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.5)
        assert age(alive) < 2
