"""Alembic environment: async engine; the URL comes from the caller (`db.migrate.upgrade`, which
`articles db upgrade` uses) or, for a bare `alembic` command, from `DATABASE_URL`."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from articles_client import outbox
from db.engine import EngineOptions, make_engine
from db.models import Base

config = context.config
# The outbox table is the client's (a service adds it to its own metadata the same way).
target_metadata = [Base.metadata, outbox.metadata]


def _url() -> str:
    # The database layer reads no project settings: that would import the layer above it.
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set: run `articles db upgrade`, or set DATABASE_URL")
    return str(url)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    # Migrations run in one transaction, so they work through PgBouncer too, with its recipe.
    options = EngineOptions(pgbouncer=bool(config.attributes.get("pgbouncer", False)))
    engine = make_engine(_url(), options=options)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
