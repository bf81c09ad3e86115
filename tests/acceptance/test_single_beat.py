"""Exactly one beat publishes: two beats share a Redis lease; the second stands by, and takes
over within the lease's TTL when the holder is killed (SIGKILL: no chance to release it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import service_env
from tests.support.processes import Proc, celery_beat

pytestmark = pytest.mark.acceptance

TTL = 6
ENV = {"BEAT_LOCK_TTL": str(TTL), "PIPELINE_INTERVAL_SECONDS": "1", "REAPER_INTERVAL_SECONDS": "1"}
SENDING = "Sending due task"


def wait_for_either(beats: list[Proc], needle: str, timeout: float) -> Proc:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for beat in beats:
            if needle in beat.log():
                return beat
        time.sleep(0.1)
    raise AssertionError(f"no beat logged {needle!r}:\n" + "\n".join(b.log() for b in beats))


def test_one_beat_publishes_and_a_standby_takes_over_when_it_dies(
    clean_redis: Any, tmp_path: Path
) -> None:
    env = service_env(**ENV)
    with (
        celery_beat(env, tmp_path / "a", tmp_path / "a.db") as first,
        celery_beat(env, tmp_path / "b", tmp_path / "b.db") as second,
    ):
        holder = wait_for_either([first, second], "acquired the lock", timeout=30)
        standby = second if holder is first else first
        standby.wait_for_log("standing by", timeout=30)
        time.sleep(3)  # several ticks of both
        assert SENDING in holder.log()
        assert SENDING not in standby.log()
        assert "acquired the lock" not in standby.log()

        holder.kill()
        killed_at = time.monotonic()
        standby.wait_for_log("acquired the lock", timeout=TTL + 10)
        took_over = time.monotonic() - killed_at
        standby.wait_for_log(SENDING, timeout=10)

    print(f"\nstandby took over {took_over:.1f}s after the holder was killed (TTL {TTL}s)")
    # The lease had up to TTL left at the kill; the standby retries every TTL/3.
    assert took_over <= TTL + TTL / 3 + 2


def test_a_beat_stopped_normally_releases_the_lock_at_once(
    clean_redis: Any, tmp_path: Path
) -> None:
    env = service_env(**ENV)
    with celery_beat(env, tmp_path / "a", tmp_path / "a.db") as first:
        first.wait_for_log("acquired the lock", timeout=30)
    assert "released the lock" in first.log()
    with celery_beat(env, tmp_path / "b", tmp_path / "b.db") as second:
        started = time.monotonic()
        second.wait_for_log("acquired the lock", timeout=10)
        # Well before the TTL: the lease was released, not left to expire.
        assert time.monotonic() - started < TTL / 2
    # The health check's file: touched on every tick.
    assert (tmp_path / "b.db.alive").exists()
