"""Helpers for the integration layer: direct sessions on this run's database, article rows."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db.engine import make_engine, make_sessionmaker
from tests.support.env import DATABASE_URL

T = TypeVar("T")


@asynccontextmanager
async def engine_for_test() -> AsyncIterator[AsyncEngine]:
    engine = make_engine(DATABASE_URL)
    try:
        yield engine
    finally:
        await engine.dispose()


def run_with_engine(fn: Callable[[AsyncEngine], Awaitable[T]], timeout: float = 60) -> T:
    """Run `fn(engine)` on a fresh loop with a NullPool engine on this run's database."""

    async def main() -> T:
        async with engine_for_test() as engine:
            return await asyncio.wait_for(fn(engine), timeout)

    return asyncio.run(main())


def run_in_session(fn: Callable[[AsyncSession], Awaitable[T]], timeout: float = 60) -> T:
    """Run `fn(session)` in one session; the caller commits what it wants kept."""

    async def with_session(engine: AsyncEngine) -> T:
        async with make_sessionmaker(engine)() as session:
            return await fn(session)

    return run_with_engine(with_session, timeout)


def sql(query: str, **params: Any) -> list[dict[str, Any]]:
    """Run one statement in its own committed transaction; rows as dicts (empty if none)."""

    async def go(engine: AsyncEngine) -> list[dict[str, Any]]:
        async with engine.begin() as conn:
            result = await conn.execute(text(query), params)
            return [dict(row._mapping) for row in result] if result.returns_rows else []

    return run_with_engine(go)


def add_articles(count: int, *, body: str = "alpha beta gamma. delta epsilon.") -> list[int]:
    """Insert `count` pending articles with plain SQL (server defaults fill the rest)."""
    rows = sql(
        "INSERT INTO articles (title, body) "
        "SELECT 'title ' || n, :body FROM generate_series(1, :count) AS n RETURNING id",
        body=body,
        count=count,
    )
    return sorted(int(r["id"]) for r in rows)


# Soft-time-limit interruption, as Celery's prefork pool does it: a signal whose handler raises
# in the main thread while the coroutine runs elsewhere. Used by both bridges' tests.
SLEEP_SECONDS = 3.0


@contextmanager
def soft_time_limit(after: float) -> Iterator[None]:
    """Raise `SoftTimeLimitExceeded` in the main thread `after` seconds from now, by signal."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SoftTimeLimitExceeded("soft time limit (test)")

    previous = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(after, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, previous)


def summary_of(article_id: int) -> object:
    return sql("SELECT summary FROM articles WHERE id = :id", id=article_id)[0]["summary"]


async def write_then_sleep(session: AsyncSession, article_id: int) -> str:
    """Write, then sleep inside PostgreSQL, then commit: an interruption must stop the commit."""
    await session.execute(
        text("UPDATE articles SET summary = 'interrupted write' WHERE id = :id"), {"id": article_id}
    )
    await session.execute(text("SELECT pg_sleep(:s)"), {"s": SLEEP_SECONDS})
    await session.commit()
    return "committed"
