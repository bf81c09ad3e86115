"""Housekeeping tasks that beat schedules."""

from __future__ import annotations

import functools
from typing import Any

from celery import Task
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client import contract
from articles_client.contract import ReapPayload
from db import queries
from tasks.base import ArticleTask, payload_of
from worker.runtime import bridge
from worker.runtime.app import app
from worker.runtime.settings import get_settings


async def _reap(
    session: AsyncSession, *, lease: float, max_attempts: int, run_age: float
) -> dict[str, int]:
    reaped = await queries.reap_stale(session, lease_seconds=lease, max_attempts=max_attempts)
    abandoned = await queries.abandon_stale_runs(session, older_than_seconds=run_age)
    await session.commit()
    return {"returned": reaped.returned, "failed": reaped.failed, "abandoned_runs": abandoned}


@app.task(name=contract.REAP_STALE, base=ArticleTask, bind=True)
def reap_stale(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, int]:
    """Return articles whose claim lease expired (their worker died) to `pending`, or to `failed`
    after too many attempts, and mark runs that outlived any task's hard limit as abandoned."""
    payload_of(self, ReapPayload, args, kwargs)
    settings = get_settings()
    return bridge.run_in_session(
        functools.partial(
            _reap,
            lease=settings.claim_lease_seconds,
            max_attempts=settings.max_attempts,
            # A run's task cannot outlive its hard limit; twice that leaves room for retries.
            run_age=2 * settings.task_time_limit,
        )
    )
