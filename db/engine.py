"""Engine factories. Nothing here runs at import time: engines are made after fork, per process."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool


def _connect_args(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Writers queue on SQLite's lock instead of failing at once with "database is locked".
        return {"timeout": 30}
    # Identify our connections in pg_stat_activity; keep asyncpg's statement cache.
    return {"server_settings": {"application_name": "articles-worker"}}


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        # WAL lets readers run beside the one writer; the claim query relies on the write lock.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def make_engine(url: str, *, pool_size: int | None = None) -> AsyncEngine:
    """Create an engine: `NullPool` when `pool_size` is None, else a pre-pinged pool of that size.

    A pooled engine is bound to the event loop its connections were opened on; only the `loop`
    bridge, which owns one loop for the process's lifetime, passes a pool size.
    """
    kwargs: dict[str, Any] = {"connect_args": _connect_args(url)}
    if pool_size is None:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(
            pool_size=pool_size,
            max_overflow=2,
            pool_pre_ping=True,  # replaces connections killed by a database restart
            pool_recycle=1800,
            pool_timeout=30,
        )
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        _sqlite_pragmas(engine)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: results are read after commit without another round trip.
    return async_sessionmaker(engine, expire_on_commit=False)
