"""Migrations build exactly the models' schema on a fresh database, and come down again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from articles_client import outbox
from db.engine import make_engine
from db.migrate import alembic_config, upgrade
from db.models import Base
from tests.support import database
from tests.support.env import DATABASE_URL, DB_NAME, PG_ADMIN_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A database of this run's own, empty, dropped afterwards."""
    name = f"{DB_NAME}_migrations"
    asyncio.run(database.recreate(PG_ADMIN_URL, name))
    try:
        yield f"{DATABASE_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(drop(name))


async def drop(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def inspect_db(url: str, fn: Any) -> Any:
    async def go() -> Any:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, [Base.metadata, outbox.metadata]))  # type: ignore[arg-type]


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def test_upgrade_head_yields_exactly_the_models_schema(empty_database: str) -> None:
    assert inspect_db(empty_database, table_names) == set()
    upgrade(empty_database)
    assert inspect_db(empty_database, table_names) == {
        "alembic_version",
        "articles",
        "articles_outbox",
        "pipeline_runs",
        "task_runs",
    }
    assert inspect_db(empty_database, schema_diff) == []


def test_downgrade_to_base_and_up_again(empty_database: str) -> None:
    upgrade(empty_database)
    command.downgrade(alembic_config(empty_database), "base")
    assert inspect_db(empty_database, table_names) == {"alembic_version"}
    upgrade(empty_database)
    assert inspect_db(empty_database, schema_diff) == []


def test_the_diff_would_see_a_drifted_schema(empty_database: str) -> None:
    """The comparison is not vacuous: a column the models lack shows up as a difference."""
    upgrade(empty_database)

    def drift(connection: Connection) -> None:
        connection.exec_driver_sql("ALTER TABLE articles ADD COLUMN stray integer")
        connection.exec_driver_sql("ALTER TABLE articles ALTER COLUMN status SET DEFAULT 'done'")
        connection.commit()

    inspect_db(empty_database, drift)
    kinds = {
        entry[0] if isinstance(entry, tuple) else entry[0][0]
        for entry in inspect_db(empty_database, schema_diff)
    }
    assert "remove_column" in kinds
    assert "modify_default" in kinds
