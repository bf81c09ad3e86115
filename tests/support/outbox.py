"""Helpers for the outbox tests: the relay as a real `articles outbox relay` process, jobs
enqueued in real transactions, and the messages a broker holds."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import redis

from articles_client import contract
from tests.support.processes import Proc, spawn

ARTICLES = str(Path(sys.executable).with_name("articles"))
# Where the contract routes articles.ingest, the task these tests enqueue.
INGEST_QUEUE = contract.ROUTES[contract.INGEST]


def asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextlib.contextmanager
def relay(env: dict[str, str], log_dir: Path, name: str = "relay") -> Iterator[Proc]:
    """Run `articles outbox relay` until the block ends (SIGTERM: it finishes its batch)."""
    proc = spawn([ARTICLES, "outbox", "relay"], env, log_dir, name)
    try:
        proc.wait_for_log("outbox relay ready", timeout=60)
        yield proc
    finally:
        proc.stop()


async def execute(url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(asyncpg_url(url))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def outbox_rows(url: str) -> int:
    return int(await execute(url, "SELECT count(*) FROM articles_outbox"))


def queued_task_ids(client: redis.Redis, queue: str = INGEST_QUEUE) -> list[str]:
    """The task id of every message waiting in a Redis queue (kombu's JSON envelope)."""
    ids = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        ids.append(envelope["headers"]["id"])
        body = json.loads(base64.b64decode(envelope["body"]))
        assert isinstance(body, list)  # [args, kwargs, embed]: JSON, never pickle
    return ids


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> float:
    """Poll `check` until it is true; return the seconds it took. Fails naming `what`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)
    return time.monotonic() - start
