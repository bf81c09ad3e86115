"""A private PostgreSQL whose workers log in with scram-sha-256, for the realistic-login rows.

The shared server trusts loopback logins, the cheapest login there is; with scram-sha-256 asyncpg
hashes the password in Python at every connect, which `nullpool` pays per task and `loop` once
per pooled connection. The cluster is `tests/support/servers.py`'s (initdb in a temp dir, its own
free port, durability relaxed: both bridges alike), with a login role whose password is stored as
a SCRAM verifier and a `pg_hba` rule that makes it log in with scram-sha-256 over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import Iterator

import asyncpg

from bench.config import BenchConfig
from tests.support.servers import private_postgres

ROLE = "bench_login"


@contextlib.contextmanager
def scram_database(cfg: BenchConfig) -> Iterator[tuple[BenchConfig, str]]:
    """Yield a config whose admin URL (the trusted superuser) seeds the private database, and
    the URL the workers use, which logs in as a role with a password, by scram-sha-256."""
    from db.migrate import upgrade

    with private_postgres() as server:
        password = secrets.token_hex(16)
        asyncio.run(_create_role_and_database(server.admin_url(), cfg.database_name, password))
        login_url = server.url(cfg.database_name, user=ROLE, password=password)
        upgrade(login_url)
        yield dataclasses.replace(cfg, admin_url=server.admin_url()), login_url


async def _create_role_and_database(admin_url: str, database: str, password: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("SET password_encryption = 'scram-sha-256'")
        await conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
        await conn.execute(f'CREATE DATABASE "{database}" OWNER {ROLE}')
        verifier = await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", ROLE)
    finally:
        await conn.close()
    if not str(verifier).startswith("SCRAM-SHA-256$"):
        raise RuntimeError("the benchmark's login role has no SCRAM verifier")
