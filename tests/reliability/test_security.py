"""Secrets stay secret: with a password-protected Redis and a PostgreSQL role that logs in with a
password, neither password appears in worker or beat logs, producer output, or task results.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from articles_client import contract
from tests.reliability.conftest import APP_PASSWORD, APP_USER, Stack
from tests.support.processes import ROOT
from tests.support.servers import PrivatePostgres, private_redis

pytestmark = pytest.mark.reliability

REDIS_PASSWORD = "redis-Secret-41d9"


@pytest.fixture
def secret_stack(private_pg: PrivatePostgres, stack: Stack, tmp_path: Path) -> Iterator[Stack]:
    """`stack`'s database, but a Redis that requires a password and a password-protected role."""
    with private_redis(password=REDIS_PASSWORD) as broker:
        yield Stack(
            pg=private_pg,
            redis=broker,
            database=stack.database,
            log_dir=tmp_path / "s",
            rabbit=stack.rabbit,
            vhost=stack.vhost,
        )


def test_no_password_in_logs_output_or_results(secret_stack: Stack) -> None:
    stack = secret_stack
    stack.add_articles(3)
    env = stack.env(DATABASE_URL=stack.pg.url(stack.database, user=APP_USER, password=APP_PASSWORD))
    produce = [sys.executable, "-m", "tests.reliability.produce", "1"]
    with stack.client() as app, stack.worker(env) as worker, stack.beat(env) as beat:
        ok = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": 2})
        bad = app.send_task(contract.INGEST, kwargs={"title": "no body"})
        assert ok.get(timeout=30)["status"] == "done"
        bad.get(timeout=30, propagate=False)
        produced = subprocess.run(produce, cwd=ROOT, env=env, capture_output=True, timeout=60)
        results = b"".join(
            stack.redis.client().get(key) or b""
            for key in stack.redis.client().scan_iter("celery-task-meta-*")
        )
        stack.stop_broker()  # the producer's error message names the broker URL
        refused = subprocess.run(produce, cwd=ROOT, env=env, capture_output=True, timeout=60)
        stack.start_broker()
        logs = (worker.log() + beat.log()).encode()
    outputs = produced.stdout + produced.stderr + refused.stdout + refused.stderr
    assert b'"ok": true' in produced.stdout
    assert b"could not publish" in refused.stdout
    assert b"***@127.0.0.1" in logs + outputs  # URLs are shown, masked
    assert results
    for secret in (APP_PASSWORD.encode(), REDIS_PASSWORD.encode()):
        for where, text in (("logs", logs), ("producer output", outputs), ("results", results)):
            assert secret not in text, f"a password appears in the {where}"
