"""Create, clean and inspect the test database and Redis db."""

from __future__ import annotations

import asyncpg
import redis
from sqlalchemy import text

from db.engine import make_engine


async def recreate(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def truncate(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "TRUNCATE articles, pipeline_runs, articles_outbox, task_runs RESTART IDENTITY"
                )
            )
    finally:
        await engine.dispose()


async def fetch(url: str, sql: str, **params: object) -> list[dict[str, object]]:
    """Run one read query on a fresh connection; rows as dicts."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(sql), params)
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


def flush_redis(client: redis.Redis) -> None:
    keys = [k for k in client.scan_iter(count=1000) if not k.startswith(b"_kombu.binding.")]
    if keys:
        client.delete(*keys)
