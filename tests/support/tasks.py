"""Test-only tasks, loaded into workers through EXTRA_TASK_MODULES=tests.support.tasks.

They cross the same bridge as the real tasks, so they exercise its cancellation and pools.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.contract import CONTRACT_HEADER, IngestPayload, parse_payload
from articles_client.errors import InvalidPayload, TransientError
from worker.runtime import bridge
from worker.runtime.app import app


async def _write_then_sleep(session: AsyncSession, *, article_id: int, seconds: float) -> str:
    await session.execute(
        text("UPDATE articles SET summary = 'written by slow_write' WHERE id = :id"),
        {"id": article_id},
    )
    await session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
    await session.commit()
    return "committed"


@app.task(name="tests.slow_write")
def slow_write(article_id: int, seconds: float) -> str:
    """Write, then sleep inside the transaction, then commit: a soft time limit must stop it."""
    return bridge.run_in_session(
        functools.partial(_write_then_sleep, article_id=article_id, seconds=seconds)
    )


@app.task(name="tests.noop")
def noop() -> None:
    """An empty task: the Celery + broker ceiling for benchmarks."""


async def _pid(session: AsyncSession) -> dict[str, Any]:
    backend = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return {"backend_pid": backend, "worker_pid": os.getpid()}


@app.task(name="tests.backend_pid")
def backend_pid() -> dict[str, Any]:
    """Which PostgreSQL backend served this call, from which worker process (connection reuse
    shows as one backend pid per worker pid)."""
    return bridge.run_in_session(_pid)


class IngestPayloadNext(IngestPayload):
    """The ingest payload as a next minor version (1.1) of the contract would define it: one new
    optional field, whose absence means what version 1.0 did."""

    language: str | None = None


@app.task(name="tests.ingest_next", bind=True)
def ingest_next(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Validate an ingest payload as a worker speaking contract 1.1 would; return what it read."""
    version = getattr(self.request, CONTRACT_HEADER, None)
    payload = parse_payload(
        IngestPayloadNext, self.name, args, kwargs, sender_version=version, own_version="1.1"
    )
    return {"payload": payload.model_dump(), "sender_version": version}


@app.task(name="tests.fail")
def fail(kind: str, note: str = "") -> None:
    """A plain `@app.task` (no project base class) that fails: `invalid`, `bug` or `transient`."""
    if kind == "invalid":
        raise InvalidPayload(f"kind: refused on purpose {note}")
    if kind == "transient":
        raise TransientError("transient database error: the test says so")
    raise ValueError(f"a bug in a user's task {note}")


@app.task(name="tests.crash")
def crash() -> None:
    """Kill the process running it, as an out-of-memory kill or a segfault would."""
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="tests.stubborn")
def stubborn(seconds: float) -> None:
    """Sleep, ignoring the soft time limit: only the hard limit (killing the child) stops it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.1)
