"""Helpers for the integration layer: direct sessions on this run's database, article rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

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
