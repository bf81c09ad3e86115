"""Engine factories. Nothing here runs at import time: engines are made after fork, per process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

APPLICATION_NAME = "articles-worker"
# An execution option every connection of a PgBouncer-mode engine carries (see autocommit_next).
PGBOUNCER_OPTION = "articles_pgbouncer"


@dataclass(frozen=True)
class EngineOptions:
    """How the engine talks to PostgreSQL (ignored for SQLite).

    `pgbouncer`: the URL points at PgBouncer in transaction (or statement) pooling mode, where
    consecutive transactions of one client may run on different server connections.
    """

    pgbouncer: bool = False
    # Session limits in milliseconds, 0 for none: statement_timeout, lock_timeout and
    # idle_in_transaction_session_timeout.
    statement_timeout_ms: int = 0
    lock_timeout_ms: int = 0
    idle_in_transaction_timeout_ms: int = 0

    def limits(self) -> dict[str, str]:
        """The PostgreSQL settings to apply, by name (only those that are on)."""
        values = {
            "statement_timeout": self.statement_timeout_ms,
            "lock_timeout": self.lock_timeout_ms,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_timeout_ms,
        }
        return {name: str(ms) for name, ms in values.items() if ms > 0}


def _statement_name() -> str:
    # Unique per statement: behind PgBouncer, a server connection may already hold a statement
    # prepared by another client under asyncpg's default, per-connection counter name.
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _connect_args(url: str, options: EngineOptions) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Writers queue on SQLite's lock instead of failing at once with "database is locked".
        return {"timeout": 30}
    # Identify our connections in pg_stat_activity (PgBouncer forwards application_name).
    server_settings = {"application_name": APPLICATION_NAME}
    if not options.pgbouncer:
        # Directly connected, the limits are startup parameters: free, and they cover every
        # statement. PgBouncer refuses unknown startup parameters (see _set_local_limits).
        server_settings.update(options.limits())
    args: dict[str, Any] = {"server_settings": server_settings}
    if options.pgbouncer:
        # SQLAlchemy's recipe for PgBouncer (asyncpg dialect docs, "Prepared Statement Name with
        # PGBouncer"): no statement cache in asyncpg or in the dialect, since a cached statement
        # lives on a server connection the next transaction may not get, and unique names, since
        # PgBouncer before 1.21 hands prepared statements of one client to another.
        args.update(
            statement_cache_size=0,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=_statement_name,
        )
    return args


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        # WAL lets readers run beside the one writer; the claim query relies on the write lock.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _set_local_limits(engine: AsyncEngine, limits: dict[str, str]) -> None:
    """Apply the limits with SET LOCAL semantics at the start of every transaction.

    Behind PgBouncer in transaction mode a session-level SET would stay on the server connection
    for its next, unrelated client, and startup parameters other than a few are refused. A
    transaction-local setting ends with the transaction, on whatever server connection it ran.
    It costs one statement per transaction, so it is used only behind PgBouncer.
    """
    statement = "SELECT " + ", ".join(
        f"set_config('{name}', '{value}', true)" for name, value in limits.items()
    )

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(statement)


def make_engine(
    url: str, *, pool_size: int | None = None, options: EngineOptions | None = None
) -> AsyncEngine:
    """Create an engine: `NullPool` when `pool_size` is None, else a pool of that size.

    A pooled engine is bound to the event loop its connections were opened on; only the `loop`
    bridge, which owns one loop for the process's lifetime, passes a pool size.
    """
    options = options or EngineOptions()
    kwargs: dict[str, Any] = {"connect_args": _connect_args(url, options)}
    if pool_size is None:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(
            pool_size=pool_size,
            max_overflow=2,
            # No pre-ping: it cost a round trip on every checkout to find what the first statement
            # finds anyway. A connection found dead at use is invalidated by SQLAlchemy (with every
            # older connection of the pool), and the task fails with `TransientError` and retries
            # (db/errors.py); the retry gets a fresh connection.
            pool_recycle=1800,
            pool_timeout=30,
        )
    if options.pgbouncer:
        kwargs["execution_options"] = {PGBOUNCER_OPTION: True}
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        _sqlite_pragmas(engine)
    elif options.pgbouncer and options.limits():
        _set_local_limits(engine, options.limits())
    return engine


async def autocommit_next(session: AsyncSession) -> None:
    """Run the session's next transaction as single statements, each committed on its own: no
    BEGIN and no COMMIT, two round trips that carry nothing around one statement.

    Not behind PgBouncer in transaction mode: outside a transaction, a statement's prepare and
    its execution are two transactions to PgBouncer and may reach different server connections
    ("prepared statement ... does not exist").
    """
    bind = session.bind
    if bind is not None and not bind.sync_engine.get_execution_options().get(PGBOUNCER_OPTION):
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: results are read after commit without another round trip.
    return async_sessionmaker(engine, expire_on_commit=False)
