"""Least privilege (compose): `deploy/postgres-init/10-app-role.sh`, run as the official postgres
image runs it, gives the app role rows only. Migrations run as the owner afterwards; the app role
can then do the tasks' work, and no DDL."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from db.migrate import upgrade
from tasks import jobs
from tests.support.env import PG_ADMIN_URL
from worker.runtime import bridge

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres-init" / "10-app-role.sh"


def admin(query: str, url: str = PG_ADMIN_URL) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(query)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture
def roles() -> Iterator[tuple[str, str, str]]:
    """A fresh owner role, its database, and the name the script gives the app role."""
    suffix = uuid.uuid4().hex[:8]
    owner, app, db = f"owner_{suffix}", f"app_{suffix}", f"least_{suffix}"
    admin(f"CREATE ROLE {owner} LOGIN SUPERUSER")  # as POSTGRES_USER is in the image
    admin(f"CREATE DATABASE {db} OWNER {owner}")
    try:
        yield owner, app, db
    finally:
        admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin(f"DROP ROLE IF EXISTS {app}")
        admin(f"DROP ROLE IF EXISTS {owner}")


def test_app_role_reads_and_writes_rows_only(roles: tuple[str, str, str]) -> None:
    owner, app, db = roles
    env = {
        **os.environ,
        "POSTGRES_USER": owner,
        "POSTGRES_DB": db,
        "APP_DB_USER": app,
        "APP_DB_PASSWORD": "app-pw",
        "PGHOST": "127.0.0.1",
    }
    subprocess.run(["sh", str(SCRIPT)], env=env, check=True, capture_output=True, timeout=60)
    upgrade(f"postgresql+asyncpg://{owner}@127.0.0.1:5432/{db}")  # tables created after the grants

    app_url = f"postgresql://{app}@127.0.0.1:5432/{db}"
    admin("INSERT INTO articles (title, body) VALUES ('t', 'One two three. Four.')", app_url)
    as_app = bridge.NullPoolBridge(app_url.replace("postgresql", "postgresql+asyncpg"), 10)
    try:
        done = as_app.run_in_session(functools.partial(jobs.process_article, article_id=1))
    finally:
        as_app.close()
    assert done["status"] == "done"
    admin("DELETE FROM articles", app_url)

    for ddl in (
        "CREATE TABLE intruder (id int)",
        "DROP TABLE articles",
        "ALTER TABLE articles ADD COLUMN x int",
        "TRUNCATE articles",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            admin(ddl, app_url)
