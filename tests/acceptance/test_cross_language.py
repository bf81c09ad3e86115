"""A Node.js service enqueues jobs by task name (celery-node over Redis) and reads JSON results.

This is the promise to non-Python callers: the task names and JSON payloads are the whole
contract. The test installs celery-node from the npm registry into tests/cross_language/.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.database import fetch
from tests.support.env import BROKER_URL, REDIS_URL

pytestmark = pytest.mark.acceptance

NODE_DIR = Path(__file__).resolve().parents[1] / "cross_language"


@pytest.fixture(scope="module")
def node_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    if not (NODE_DIR / "node_modules" / "celery-node").exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=180,
        )
    return NODE_DIR / "send_task.js"


def send_from_node(script: Path, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        ["node", str(script), BROKER_URL, REDIS_URL, name, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from node: {out.stdout}\n{out.stderr}"
    return dict(json.loads(lines[-1]))


def test_node_service_ingests_and_runs_the_pipeline(
    node_client: Path, live_worker: Any, database_url: str
) -> None:
    body = "Sent from Node. A second sentence follows here. And a third."
    first = send_from_node(
        node_client, "articles.ingest", {"title": "From Node", "body": body, "external_id": "n-1"}
    )
    assert first == {"status": "ok", "result": {"article_id": 1, "created": True}}

    again = send_from_node(
        node_client, "articles.ingest", {"title": "From Node", "body": body, "external_id": "n-1"}
    )
    assert again["result"] == {"article_id": 1, "created": False}

    run = send_from_node(node_client, "articles.run_pipeline", {"batch_size": 10})
    assert run["result"]["claimed"] == 1
    assert run["result"]["succeeded"] == 1

    rows = asyncio.run(fetch(database_url, "SELECT status, word_count, summary FROM articles"))
    assert rows == [
        {
            "status": "done",
            "word_count": 11,
            "summary": "Sent from Node. A second sentence follows here.",
        }
    ]
