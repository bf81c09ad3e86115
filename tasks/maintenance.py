"""Housekeeping tasks that beat schedules."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from articles_client import contract
from articles_client.contract import ReapPayload
from db import queries
from worker.runtime.async_tasks import async_task
from worker.runtime.settings import get_settings


@async_task(name=contract.REAP_STALE, payload=ReapPayload)
async def reap_stale(session: AsyncSession, payload: ReapPayload) -> dict[str, int]:
    """Return articles whose claim lease expired (their worker died) to `pending`, or to `failed`
    after too many attempts, and mark runs that outlived any task's hard limit as abandoned."""
    settings = get_settings()
    reaped = await queries.reap_stale(
        session, lease_seconds=settings.claim_lease_seconds, max_attempts=settings.max_attempts
    )
    # A run's task cannot outlive its hard limit; twice that leaves room for retries.
    abandoned = await queries.abandon_stale_runs(
        session, older_than_seconds=2 * settings.task_time_limit
    )
    await session.commit()
    return {"returned": reaped.returned, "failed": reaped.failed, "abandoned_runs": abandoned}
