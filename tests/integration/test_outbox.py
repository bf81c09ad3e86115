"""The outbox on real PostgreSQL and Redis: a job is sent if and only if its transaction commits,
runs once, and `articles status` shows what waits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import make_engine
from tests.support import outbox as support
from tests.support.database import fetch
from tests.support.env import service_env
from worker import outbox

pytestmark = pytest.mark.integration


class RolledBack(Exception):
    pass


@pytest.fixture
def empty_outbox(clean_db: str) -> str:
    """`clean_db` empties the outbox table too."""
    return clean_db


async def enqueue_ingest(url: str, external_id: str, *, commit: bool) -> str:
    engine = make_engine(url)
    task_id = ""
    try:
        async with AsyncSession(engine) as session:
            try:
                async with session.begin():
                    task_id = await outbox.enqueue_async(
                        session,
                        "articles.ingest",
                        title=f"Article {external_id}",
                        body="One sentence. Another one.",
                        external_id=external_id,
                    )
                    if not commit:
                        raise RolledBack
            except RolledBack:
                pass
    finally:
        await engine.dispose()
    return task_id


def articles(url: str) -> list[dict[str, Any]]:
    return asyncio.run(fetch(url, "SELECT external_id, ingest_task_id FROM articles ORDER BY id"))


def test_rollback_sends_nothing_and_commit_sends_one_job_that_runs_once(
    live_worker: Any, empty_outbox: str, tmp_path: Path
) -> None:
    # A sweep far longer than the test: the relay must be woken by the commit's NOTIFY.
    env = service_env(OUTBOX_SWEEP_SECONDS="600")
    with support.relay(env, tmp_path):
        time.sleep(1)  # let it LISTEN: the point is the notification, not the start-up drain
        asyncio.run(enqueue_ingest(empty_outbox, "rolled-back", commit=False))
        committed_at = time.monotonic()
        task_id = asyncio.run(enqueue_ingest(empty_outbox, "committed", commit=True))
        support.wait_until(lambda: len(articles(empty_outbox)) >= 1, 30, "the job ran")
        took = time.monotonic() - committed_at
        time.sleep(2)  # room for a second delivery, were there one
    assert articles(empty_outbox) == [{"external_id": "committed", "ingest_task_id": task_id}]
    assert asyncio.run(support.outbox_rows(empty_outbox)) == 0
    assert took < 10, f"{took:.1f}s from commit to done: the NOTIFY did not wake the relay"


def test_status_shows_the_backlog_and_the_age_of_its_oldest_row(
    empty_outbox: str, clean_redis: redis.Redis
) -> None:
    asyncio.run(enqueue_ingest(empty_outbox, "waiting", commit=True))
    time.sleep(1.1)
    done = subprocess.run(
        [support.ARTICLES, "status", "--json"],
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    box = json.loads(done.stdout)["outbox"]
    assert box["backlog"] == 1
    assert box["failing"] == 0
    assert 1.0 <= box["oldest_age_seconds"] < 60
    text = subprocess.run(
        [support.ARTICLES, "status"], env=service_env(), capture_output=True, text=True, timeout=60
    )
    assert "outbox: 1 row(s) waiting, oldest" in text.stdout
