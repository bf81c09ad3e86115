"""The FastAPI example (examples/fastapi_service.py) under uvicorn, in a subprocess, from a venv
holding only the client wheel, FastAPI, uvicorn and httpx: 200 concurrent requests each enqueue
an ingest while /health is timed from another process; every job is processed by the real
in-process worker.

The publishes run in asyncio's thread pool, several at once. The client does not subscribe to
results when it publishes (Celery's Redis result backend shares one pub/sub connection between
threads, celery/celery #4363 and #6335), which the test checks on Redis itself.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.helpers import sql
from tests.support.client_venv import build_client_venv
from tests.support.env import REDIS_URL
from tests.support.processes import ROOT, spawn
from worker.runtime.app import app

pytestmark = pytest.mark.acceptance

REQUESTS = 200
LOAD = ROOT / "tests" / "support" / "fastapi_load.py"


@pytest.fixture(scope="module")
def service_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_client_venv(tmp_path_factory.mktemp("fastapi"), "fastapi", "uvicorn", "httpx")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def test_fastapi_service_enqueues_under_load_and_stays_responsive(
    service_venv: Path, live_worker: Any, redis_client: redis.Redis, tmp_path: Path
) -> None:
    python = str(service_venv / "bin" / "python")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "PATH": "/usr/bin:/bin",
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
    }
    server = spawn(
        [python, "-m", "uvicorn", "fastapi_service:app", "--app-dir", str(ROOT / "examples"),
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        env, tmp_path / "logs", "uvicorn", cwd=tmp_path,
    )  # fmt: skip
    stop = tmp_path / "stop-probing"
    try:
        server.wait_for_log("Uvicorn running on", timeout=60)
        prober = subprocess.Popen(
            [python, str(LOAD), "health", base, str(stop)], stdout=subprocess.PIPE, text=True
        )
        time.sleep(0.5)  # some idle samples first
        prefix = f"load-{uuid.uuid4().hex[:8]}"
        done = subprocess.run(
            [python, str(LOAD), "load", base, str(REQUESTS), prefix],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        load = json.loads(done.stdout)
        # Nothing in the service waits on a task's result channel: it never subscribed.
        channels = [f"celery-task-meta-{task_id}" for task_id in load["task_ids"]]
        subscribed = [n for _, n in redis_client.pubsub_numsub(*channels) if n]
    finally:
        stop.touch()
        server.stop()
    probed, _ = prober.communicate(timeout=60)

    assert load["statuses"] == [202] * REQUESTS, server.log()[-3000:]
    assert len(set(load["task_ids"])) == REQUESTS
    assert subscribed == []

    # Every job is processed by the worker (waited for first, so a failed measurement below
    # leaves no backlog in the queue for the next test).
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        count = sql(f"SELECT count(*) AS n FROM articles WHERE title LIKE '{prefix}-%'")[0]["n"]
        if count == REQUESTS:
            break
        time.sleep(0.5)
    assert count == REQUESTS
    states = {app.AsyncResult(task_id).get(timeout=60)["created"] for task_id in load["task_ids"]}
    assert states == {True}

    samples = json.loads(probed)["samples"]
    during = [ms for at, ms, status in samples if load["started"] <= at <= load["finished"]]
    idle = [ms for at, ms, status in samples if at < load["started"]]
    assert all(status == 200 for _, _, status in samples)
    load_seconds = load["finished"] - load["started"]
    print(
        f"\n{REQUESTS} concurrent POST /articles answered in {load_seconds:.2f} s; /health during "
        f"the load: {len(during)} samples, median {statistics.median(during):.1f} ms, "
        f"p99 {p99(during):.1f} ms, max {max(during):.1f} ms; before it: {len(idle)} samples, "
        f"median {statistics.median(idle):.1f} ms, max {max(idle):.1f} ms"
    )
    assert len(during) >= 10, "too few /health samples during the load to measure"
    assert p99(during) < 50
