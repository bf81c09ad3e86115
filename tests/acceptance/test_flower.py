"""Flower, started as the README says, lists a running worker and the tasks it ran.

Its API answers only with the basic auth from `FLOWER_BASIC_AUTH`; `/metrics` (Prometheus) and
`/healthcheck` are open, as Flower always serves them.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from articles_client import contract
from tests.support.env import service_env
from tests.support.processes import CELERY, celery_worker, spawn
from tests.support.servers import free_port

pytestmark = pytest.mark.acceptance

AUTH = "ops:fl0wer-pass"


def _get(url: str, auth: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except urllib.error.URLError:  # not listening yet
        return 0, ""


def _poll(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_flower_lists_the_worker_and_its_tasks_behind_auth(
    subprocess_workers_only: None, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(FLOWER_BASIC_AUTH=AUTH)
    with celery_worker(env, tmp_path, concurrency=1, name="flowerseen") as worker:
        flower = spawn(
            [CELERY, "-A", "worker", "flower", f"--port={port}", "--address=127.0.0.1"],
            env,
            tmp_path,
            "flower",
        )
        try:
            _poll(lambda: _get(f"{base}/healthcheck")[0] == 200, 30, "flower to serve")
            from worker.producer import enqueue_ingest

            assert _get(f"{base}/api/workers")[0] == 401
            assert _get(f"{base}/api/workers", auth="ops:wrong")[0] == 401

            def workers() -> dict[str, Any]:
                status, body = _get(f"{base}/api/workers?refresh=1", auth=AUTH)
                return json.loads(body) if status == 200 else {}

            listed = _poll(
                lambda: [n for n in workers() if n.startswith("flowerseen@")], 30, "worker"
            )
            assert listed

            def recorded(task_id: str) -> dict[str, Any] | None:
                status, body = _get(f"{base}/api/tasks?limit=50", auth=AUTH)
                info = json.loads(body).get(task_id) if status == 200 else None
                # Complete once Flower has the task's received and succeeded events.
                return info if info and info.get("name") and info["state"] == "SUCCESS" else None

            # The worker started with task events off: Flower turns them on (its enable_events
            # option, on by default), so what it lists below proves it did.
            # Flower records only events sent after its receiver subscribed, which it does a
            # moment after it starts serving: a task racing that subscription may be seen only
            # in part. Every task sent after that is recorded whole; five tries is plenty.
            seen = None
            for attempt in range(5):
                result = enqueue_ingest(title=f"Seen by Flower {attempt}", body="One. Two.")
                assert result.get(timeout=30)["created"] is True
                deadline = time.monotonic() + 5
                while seen is None and time.monotonic() < deadline:
                    seen = recorded(result.id)
                    time.sleep(0.3)
                if seen is not None:
                    break
            assert seen is not None, "Flower recorded none of five tasks"
            assert seen["name"] == contract.INGEST
            assert seen["worker"].startswith("flowerseen@")
            # The arguments come from the task events (no extended results in Redis).
            assert "Seen by Flower" in str(seen["kwargs"])

            status, metrics = _get(f"{base}/metrics")
            assert status == 200
            assert "flower_events_total" in metrics
        finally:
            flower.stop()
        assert AUTH.split(":")[1] not in flower.log() + worker.log()
