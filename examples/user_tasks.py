"""Your own async tasks: examples of `@async_task`, loaded with EXTRA_TASK_MODULES.

Each is an ordinary `async def` function; the decorator makes it a Celery task that runs on the
worker's async bridge, with validated arguments, a session when asked for, and the soft time
limit and retry policy of the article tasks. The tests in tests/acceptance/test_async_tasks.py
run every one of them on real workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.errors import TransientError
from db.models import Article
from worker import TaskContext, async_task, lifespan

log = logging.getLogger(__name__)


@async_task(name="examples.count_articles")
async def count_articles(session: AsyncSession, *, status: str = "pending") -> int:
    """A session task that reads: how many articles have `status`."""
    query = select(func.count()).select_from(Article).where(Article.status == status)
    return (await session.execute(query)).scalar_one()


@async_task(name="examples.set_summary")
async def set_summary(session: AsyncSession, *, article_id: int, summary: str) -> bool:
    """A session task that writes and commits. Returns False when no such article exists."""
    result = await session.execute(
        update(Article).where(Article.id == article_id).values(summary=summary)
    )
    await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


@async_task(name="examples.bump_once", once=True)
async def bump_once(session: AsyncSession, *, article_id: int) -> int:
    """Not idempotent by itself (a counter), made so by `once=True`: a duplicate delivery of
    this task id, after its transaction committed, does nothing."""
    row = await session.execute(
        update(Article)
        .where(Article.id == article_id)
        .values(times_processed=Article.times_processed + 1)
        .returning(Article.times_processed)
    )
    count = row.scalar_one()
    await session.commit()
    return count


@async_task(name="examples.schedule", soft_time_limit=5)
async def schedule(*, at: datetime, every: timedelta, ref: UUID, price: Decimal) -> dict[str, str]:
    """No session. JSON has no datetime, UUID or decimal: they arrive as strings and are
    accepted here because the annotations ask for them."""
    await asyncio.sleep(0)
    return {"next": (at + every).isoformat(), "ref": ref.hex, "price": str(price * 2)}


@async_task(name="examples.add")
async def add(x: int, y: int) -> int:
    """The smallest task: canvas signatures chain these (the previous result comes first)."""
    return x + y


@async_task(name="examples.progress")
async def progress(ctx: TaskContext, *, steps: int, pause: float = 0.2) -> dict[str, object]:
    """Reports PROGRESS after each step and returns its own task id and attempt number."""
    for done in range(1, steps + 1):
        await asyncio.sleep(pause)
        await ctx.report_progress(done=done, total=steps)
    return {"task_id": ctx.task_id, "retries": ctx.retries}


@async_task(name="examples.flaky", max_retries=5, retry_backoff_max=1)
async def flaky(ctx: TaskContext, *, fail_times: int) -> int:
    """Fails with a transient error `fail_times` times, then succeeds: the shared retry policy."""
    if ctx.retries < fail_times:
        raise TransientError(f"attempt {ctx.retries + 1} failed on purpose")
    return ctx.retries


@async_task(name="examples.slow_write", soft_time_limit=1)
async def slow_write(session: AsyncSession, *, article_id: int, seconds: float) -> str:
    """Writes, then sleeps inside the transaction past its 1 s soft limit: it must roll back."""
    await session.execute(
        update(Article).where(Article.id == article_id).values(summary="written by slow_write")
    )
    await session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
    await session.commit()
    return "committed"


@dataclass
class Resource:
    """Stands for a client with a connection pool (httpx.AsyncClient, redis.asyncio.Redis):
    bound to the loop it was created on, worth creating once per process."""

    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    pid: int = field(default_factory=os.getpid)
    uses: int = 0
    closed: bool = False


@lifespan
@asynccontextmanager
async def shared_resource() -> AsyncIterator[Resource]:
    """Entered on the bridge's loop on first use; exited when the worker shuts down."""
    resource = Resource()
    log.info("shared_resource entered in pid %s", resource.pid)
    try:
        yield resource
    finally:
        resource.closed = True
        log.warning("shared_resource exited in pid %s after %s uses", resource.pid, resource.uses)


@async_task(name="examples.use_resource")
async def use_resource(ctx: TaskContext) -> dict[str, object]:
    """Uses the process's shared resource and says which one it got."""
    resource = await ctx.resource(shared_resource)
    resource.uses += 1
    return {
        "resource": id(resource),
        "pid": resource.pid,
        "uses": resource.uses,
        "same_loop": resource.loop is asyncio.get_running_loop() and not resource.closed,
    }
