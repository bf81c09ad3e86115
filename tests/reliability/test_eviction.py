"""A worker refuses to start on a Redis that may evict queued jobs (a private Redis)."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import Stack
from tests.support import processes

pytestmark = pytest.mark.reliability


def test_worker_refuses_a_broker_redis_that_may_evict(stack: Stack) -> None:
    with stack.redis.client() as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
    args = [processes.CELERY, "-A", "worker", "worker", "-l", "info", "--without-mingle"]
    proc = processes.spawn(args, stack.env(), stack.log_dir, "evicting")
    try:
        code = proc.popen.wait(timeout=60)
    finally:
        proc.stop()
    log = proc.log()
    assert code == 2, log
    assert "maxmemory-policy allkeys-lru" in log
    assert f"127.0.0.1:{stack.redis.port}" in log
    assert "noeviction" in log
    assert "Traceback" not in log
    with stack.redis.client() as client:
        client.config_set("maxmemory-policy", "noeviction")
    with stack.worker() as worker:
        assert worker.popen.poll() is None
