"""The embedded default end to end: no URL set, so everything runs on SQLite files under ./var/.

Each test works in its own temporary directory, so its ./var/ is private. Real subprocesses:
the `articles` command, `celery -A worker worker` and `celery -A worker beat`.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import service_env
from tests.support.processes import Proc, celery_beat, celery_worker

pytestmark = pytest.mark.acceptance

ARTICLES = str(Path(sys.executable).with_name("articles"))

# Enqueues three overlapping pipeline runs through the producer and records every PROGRESS state
# the database result backend shows while they run. The client never picks the embedded default
# by itself: it is handed the project's URLs, as the `articles` command does.
WATCH_RUNS = """
import json, time
from worker.cli.backend import configure_client
from worker.producer import enqueue_pipeline_run
from worker.runtime.settings import get_settings
configure_client(get_settings())
results = [enqueue_pipeline_run(batch_size=5) for _ in range(3)]
seen = []
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    metas = [r.backend.get_task_meta(r.id) for r in results]
    seen += [m["result"] for m in metas if m["status"] == "PROGRESS"]
    if all(m["status"] in ("SUCCESS", "FAILURE") for m in metas):
        break
    time.sleep(0.02)
print(json.dumps({"final": [m["result"] for m in metas], "progress": seen}))
"""


# What the worker, beat and the command say at start when they fall back to the embedded default.
FALLBACK = (
    "DATABASE_URL, CELERY_BROKER_URL, CELERY_RESULT_BACKEND not set: using the embedded default"
)


@pytest.fixture
def embedded_env() -> dict[str, str]:
    env = service_env()
    for name in (
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "EXTRA_TASK_MODULES",
    ):
        env.pop(name, None)
    return env


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def stop_main_process(proc: Proc) -> None:
    """Warm shutdown by signalling only the main process, as `docker stop` or `kill PID` do.

    With the SQLAlchemy broker the prefork children share one task queue and its lock; a
    SIGTERM sent to the whole process group kills idle children holding that lock, and the
    parent then waits on it forever. The helper's group-wide stop is the fallback.
    """
    proc.popen.terminate()
    proc.popen.wait(timeout=60)


def articles_rows(cwd: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(cwd / "var" / "articles.db") as conn:
        return conn.execute(sql).fetchall()


def test_demo_succeeds_on_files_alone(embedded_env: dict[str, str], tmp_path: Path) -> None:
    done = run(
        [ARTICLES, "demo", "--articles", "60", "--batch-size", "10"], embedded_env, tmp_path, 180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backend: embedded files" in done.stderr
    assert f"note: {FALLBACK}" in done.stderr
    assert "demo succeeded: every seeded article is done" in done.stdout
    assert "worker stopped (exit status 0)" in done.stdout
    assert "beat stopped (exit status 0)" in done.stdout
    assert {p.name for p in (tmp_path / "var").glob("*.db")} >= {
        "articles.db",
        "broker.db",
        "results.db",
    }
    assert articles_rows(tmp_path, "SELECT status, count(*) FROM articles GROUP BY 1") == [
        ("done", 60)
    ]


def test_overlapping_runs_claim_each_article_once_and_report_progress(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    assert run([ARTICLES, "db", "upgrade"], embedded_env, tmp_path).returncode == 0
    assert run([ARTICLES, "seed", "150"], embedded_env, tmp_path).returncode == 0

    with celery_worker(embedded_env, tmp_path / "logs", concurrency=3, cwd=tmp_path) as worker:
        watched = run([sys.executable, "-c", WATCH_RUNS], embedded_env, tmp_path, 120)
        stop_main_process(worker)
    assert watched.returncode == 0, watched.stderr
    assert f"WARNING MainProcess worker.runtime.lifecycle: {FALLBACK}" in worker.log()
    report = json.loads(watched.stdout)

    claimed = [final["claimed"] for final in report["final"]]
    assert sum(claimed) == 150
    # SQLite serialises the claiming writers: no article is processed twice.
    assert articles_rows(
        tmp_path, "SELECT status, times_processed, count(*) FROM articles GROUP BY 1, 2"
    ) == [("done", 1, 150)]
    # The database result backend carries the PROGRESS states while runs are going.
    assert report["progress"], "no PROGRESS state observed"
    for meta in report["progress"]:
        assert set(meta) == {"run_id", "claimed", "done", "succeeded", "failed", "total"}
        assert 0 < meta["done"] <= meta["total"]


def test_beat_schedules_the_pipeline_and_the_reaper(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **embedded_env,
        "PIPELINE_INTERVAL_SECONDS": "2",
        "REAPER_INTERVAL_SECONDS": "1",
        "TASK_SOFT_TIME_LIMIT": "3",
        "TASK_TIME_LIMIT": "4",
        "CLAIM_LEASE_SECONDS": "5",
        "MAX_ATTEMPTS": "3",
    }
    assert run([ARTICLES, "db", "upgrade"], env, tmp_path).returncode == 0
    assert run([ARTICLES, "seed", "20"], env, tmp_path).returncode == 0
    # Two articles held by a worker that died an hour ago; one has used up its attempts.
    with sqlite3.connect(tmp_path / "var" / "articles.db") as conn:
        conn.execute(
            "UPDATE articles SET status='processing', claim_token='dead', "
            "claimed_at=datetime('now', '-1 hour'), attempts=CASE id WHEN 1 THEN 1 ELSE 3 END "
            "WHERE id IN (1, 2)"
        )

    logs = tmp_path / "logs"
    with (
        celery_worker(env, logs, cwd=tmp_path) as worker,
        celery_beat(env, logs, tmp_path / "var" / "schedule", cwd=tmp_path) as beat,
    ):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses = dict(articles_rows(tmp_path, "SELECT id, status FROM articles"))
            if statuses[2] == "failed" and all(s == "done" for i, s in statuses.items() if i != 2):
                break
            time.sleep(0.5)
        beat_log = beat.log()
        stop_main_process(worker)

    assert statuses[1] == "done"  # returned to pending by the reaper, then processed
    assert statuses[2] == "failed"  # attempts exhausted: the reaper gave up on it
    assert all(s == "done" for i, s in statuses.items() if i != 2), statuses
    error = articles_rows(tmp_path, "SELECT error FROM articles WHERE id = 2")[0][0]
    assert "gave up after 3 attempts" in error
    assert "Sending due task run-pipeline (articles.run_pipeline)" in beat_log
    assert "Sending due task reap-stale-claims (articles.reap_stale)" in beat_log
    assert FALLBACK in beat_log


SEND_BAD_JOB = """
from worker.cli.backend import configure_client
from worker.producer import enqueue_process_article
from worker.runtime.settings import get_settings
configure_client(get_settings())
result = enqueue_process_article(article_id=999)
result.get(timeout=60, propagate=False)
print(result.id, result.state)
"""


def test_dead_letters_live_in_a_file_beside_the_queues(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    assert run([ARTICLES, "db", "upgrade"], embedded_env, tmp_path).returncode == 0
    with celery_worker(embedded_env, tmp_path / "logs", concurrency=1, cwd=tmp_path) as worker:
        sent = run([sys.executable, "-c", SEND_BAD_JOB], embedded_env, tmp_path, 90)
        stop_main_process(worker)
    assert sent.returncode == 0, sent.stderr
    task_id, state = sent.stdout.split()
    assert state == "FAILURE"
    assert (tmp_path / "var" / "dead-letters.db").exists()
    listed = run([ARTICLES, "dead-letters", "list", "--json"], embedded_env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["task_id"] == task_id
    assert entry["task"] == "articles.process_article"
    assert entry["kwargs"] == {"article_id": 999}
    assert entry["error"]["type"] == "ArticleNotFound"
    status = run([ARTICLES, "status", "--json"], embedded_env, tmp_path)
    assert json.loads(status.stdout)["dead_letters"] == 1
    purged = run([ARTICLES, "dead-letters", "purge", "--all"], embedded_env, tmp_path)
    assert "1 dead letter(s) purged" in purged.stdout
