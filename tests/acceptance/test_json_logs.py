"""`LOG_FORMAT=json`: the worker, beat and the `articles` command write one JSON object per line,
with time, level, logger and message, and task name and id on lines logged inside a task (the
bridge's loop thread included). Text stays the default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from articles_client import contract
from tests.integration.helpers import add_articles
from tests.support.env import service_env
from tests.support.processes import CELERY, Proc, spawn
from worker.runtime.app import app

pytestmark = pytest.mark.acceptance

QUEUE = "json-log-tests"
ARTICLES = str(Path(sys.executable).with_name("articles"))
# Celery's own signal handlers print these raw (logging is unsafe in a signal handler).
RAW_CELERY_LINES = ("worker: Warm shutdown",)
ROOT_WARNING = "ignore:You're running the worker with superuser privileges"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as a JSON object; fails on the first that is not one."""
    records = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(RAW_CELERY_LINES):
            continue
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    return records


def test_worker_logs_json_with_task_name_and_id(
    clean_db: str, clean_redis: Any, tmp_path: Path
) -> None:
    # Celery warns about running as root before logging is set up (tests run as root here;
    # the image runs as a plain user).
    env = service_env(LOG_FORMAT="json", ASYNC_BRIDGE="loop", PYTHONWARNINGS=ROOT_WARNING)
    args = [
        CELERY, "-A", "worker", "-q", "worker", "-l", "info", "-c", "1", "-Q", QUEUE,
        "-n", "jsonlogs@%h", "--without-heartbeat", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    worker = spawn(args, env, tmp_path, "worker")
    try:
        worker.wait_for_log(" ready.", timeout=60)
        (article_id,) = add_articles(1)
        sent = app.send_task(
            contract.PROCESS_ARTICLE, kwargs={"article_id": article_id}, queue=QUEUE
        )
        assert sent.get(timeout=60)["status"] == "done"
        bad = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": "x"}, queue=QUEUE)
        with pytest.raises(Exception, match="article_id"):
            bad.get(timeout=60)
    finally:
        # SIGTERM to the main process only, as `docker stop` does (Proc.stop signals the whole
        # group, and children dying mid-line from it would interleave their output).
        os.kill(worker.pid, signal.SIGTERM)
        try:
            worker.popen.wait(timeout=30)
        finally:
            worker.stop()
    records = json_lines(worker.log())

    outcome = [r for r in records if r["logger"] == "worker.tasks" and r["task_id"] == sent.id]
    assert len(outcome) == 1
    assert outcome[0]["task_name"] == contract.PROCESS_ARTICLE
    assert outcome[0]["level"] == "INFO"
    assert "succeeded in" in outcome[0]["message"]
    failed = [r for r in records if r.get("task_id") == bad.id and r["level"] == "WARNING"]
    assert failed
    assert any("invalid" in r["message"].lower() for r in failed), failed
    assert any(r["logger"] == "celery.apps.worker" and "ready." in r["message"] for r in records)
    # Outside a task there is no task field, and no trace id without tracing.
    assert all("task_id" not in r for r in records if r["logger"] == "celery.apps.worker")
    assert all("trace_id" not in r for r in records)


def test_beat_logs_json(clean_redis: Any, tmp_path: Path) -> None:
    env = service_env(LOG_FORMAT="json", REAPER_INTERVAL_SECONDS="1", PYTHONWARNINGS=ROOT_WARNING)
    args = [CELERY, "-A", "worker", "-q", "beat", "-l", "info", "-s", str(tmp_path / "beat.db")]
    beat: Proc = spawn(args, env, tmp_path, "beat")
    try:
        beat.wait_for_log("Sending due task", timeout=30)
    finally:
        beat.stop()
    records = json_lines(beat.log())
    assert any(r["logger"] == "celery.beat" and "Starting" in r["message"] for r in records)


def test_cli_logs_json_on_stderr_and_keeps_stdout_for_output(clean_db: str) -> None:
    env = service_env(LOG_FORMAT="json")
    ok = subprocess.run(
        [ARTICLES, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert "counts" in json.loads(ok.stdout)
    (banner,) = json_lines(ok.stderr)
    assert banner["logger"] == "articles.cli"
    assert banner["message"].startswith("backend: ")

    failing = subprocess.run(
        [ARTICLES, "status", "--run", "999999"], env=env, capture_output=True, text=True, timeout=60
    )
    assert failing.returncode == 1
    error = json_lines(failing.stderr)[-1]
    assert error["level"] == "ERROR"
    assert error["message"].startswith("error: ")


def test_text_stays_the_default(clean_db: str) -> None:
    done = subprocess.run(
        [ARTICLES, "status"], env=service_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stderr.startswith("backend: ")
