"""The `articles` command in subprocesses, against this run's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from db.engine import make_engine
from tests.support.database import fetch, recreate
from tests.support.env import DB_NAME, PG_ADMIN_URL, service_env
from tests.support.processes import celery_worker

pytestmark = pytest.mark.acceptance

ARTICLES = str(Path(sys.executable).with_name("articles"))
STATUS_KEYS = ["backend", "counts", "recent_runs", "failed_articles", "outbox", "dead_letters"]
RUN_KEYS = [
    "run_id",
    "task_id",
    "status",
    "batch_size",
    "limit",
    "claimed",
    "succeeded",
    "failed",
    "error",
    "started_at",
    "finished_at",
]


def articles(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARTICLES, *args],
        env=env or service_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def execute(url: str, sql: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


def status_json() -> dict[str, Any]:
    done = articles("status", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def assert_one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """A user-caused failure: the given exit status, one `error:` line, no traceback."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_status_json_is_stable(clean_db: str) -> None:
    assert articles("seed", "7").returncode == 0
    data = status_json()
    assert list(data) == STATUS_KEYS
    assert data["backend"]["kind"] == "servers"
    assert list(data["backend"]) == ["kind", "database", "broker", "result_backend"]
    assert data["counts"] == {"pending": 7, "processing": 0, "done": 0, "failed": 0, "total": 7}
    assert data["recent_runs"] == []
    assert data["failed_articles"] == []
    assert data["outbox"] == {"backlog": 0, "oldest_age_seconds": None, "failing": 0}


def test_startup_line_names_the_backend_with_password_masked(clean_db: str) -> None:
    env = service_env(CELERY_BROKER_URL="redis://:hunter2@127.0.0.1:6379/0")
    done = articles("status", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert "backend: servers" in done.stderr
    assert "redis://:***@127.0.0.1:6379/0" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_ingest_reports_bad_lines_and_keeps_the_good_ones(clean_db: str, tmp_path: Path) -> None:
    good = {"title": "One", "body": "First sentence. Second one.", "external_id": "x-1"}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"title": "No body"}),
        "",
        json.dumps(good),  # same external_id: already present, not a second row
        json.dumps({"title": "Two", "body": "Another body here.", "source_url": "ftp://x"}),
        json.dumps({"title": "Three", "body": "Third body."}),
    ]
    path = tmp_path / "articles.jsonl"
    path.write_text("\n".join(lines) + "\n")

    done = articles("ingest", "--file", str(path))

    assert done.returncode == 1
    assert "ingested 2 new, 1 already present, 3 bad line(s)" in done.stdout
    bad = [line for line in done.stderr.splitlines() if line.startswith(str(path))]
    assert [line.split(":")[1] for line in bad] == ["2", "3", "6"]
    assert "body: Field required" in bad[1]
    rows = asyncio.run(fetch(clean_db, "SELECT title FROM articles ORDER BY id"))
    assert [r["title"] for r in rows] == ["One", "Three"]


def test_enqueue_wait_status_and_retry_failed(
    clean_db: str, clean_redis: Any, tmp_path: Path
) -> None:
    assert articles("seed", "40").returncode == 0
    with celery_worker(service_env(), tmp_path):
        done = articles("enqueue", "pipeline", "--batch-size", "7", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert list(outcome) == ["task_id", "run_id", "claimed", "succeeded", "failed", "complete"]
    assert (outcome["claimed"], outcome["succeeded"], outcome["failed"]) == (40, 40, 0)

    run = articles("status", "--run", str(outcome["run_id"]), "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)["run"]
    assert list(record) == RUN_KEYS
    assert (record["status"], record["claimed"], record["task_id"]) == (
        "succeeded",
        40,
        outcome["task_id"],
    )

    asyncio.run(
        execute(clean_db, "UPDATE articles SET status='failed', error='boom' WHERE id <= 2")
    )
    failed = status_json()["failed_articles"]
    assert [(a["id"], a["error"]) for a in failed] == [(1, "boom"), (2, "boom")]
    retried = articles("retry-failed")
    assert retried.returncode == 0
    assert "2 failed article(s) put back to pending" in retried.stdout
    assert status_json()["counts"]["pending"] == 2


def test_unreachable_database(database_url: str) -> None:
    env = service_env(DATABASE_URL="postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/none")
    line = assert_one_error_line(articles("status", "--json", env=env), 1)
    assert "postgresql+asyncpg://postgres:***@127.0.0.1:1/none" in line
    assert "ConnectionRefusedError" in line
    assert "hunter2" not in line


def test_unreachable_broker(database_url: str) -> None:
    url = "redis://:hunter2@127.0.0.1:1/0"
    env = service_env(CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=url)
    line = assert_one_error_line(articles("enqueue", "pipeline", env=env), 1)
    assert "redis://:***@127.0.0.1:1/0" in line
    assert "hunter2" not in line


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("DATABASE_URL", "postgresql+asyncpg://u:p@host:notaport/db"),
        ("DATABASE_URL", "mysql://u:p@host/db"),
        ("CELERY_BROKER_URL", "redis://host:99999999/0"),
    ],
)
def test_bad_url(variable: str, url: str) -> None:
    line = assert_one_error_line(articles("status", env=service_env(**{variable: url})), 2)
    assert variable in line


def test_unknown_run_id(clean_db: str) -> None:
    line = assert_one_error_line(articles("status", "--run", "424242", "--json"), 1)
    assert line == "error: no pipeline run with id 424242"


def test_missing_tables_say_how_to_fix(database_url: str) -> None:
    empty = f"{DB_NAME}_empty"
    asyncio.run(recreate(PG_ADMIN_URL, empty))
    env = service_env(DATABASE_URL=database_url.rsplit("/", 1)[0] + f"/{empty}")
    line = assert_one_error_line(articles("status", env=env), 1)
    assert "articles db upgrade" in line
