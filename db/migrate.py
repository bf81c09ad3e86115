"""Run Alembic migrations from code (the CLI, the tests and the demo use this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str, *, pgbouncer: bool = False) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    config.attributes["pgbouncer"] = pgbouncer
    return config


def upgrade(database_url: str, revision: str = "head", *, pgbouncer: bool = False) -> None:
    """Bring the database at `database_url` up to `revision` (`pgbouncer`: the URL is PgBouncer
    in transaction mode; see `db.engine.EngineOptions`)."""
    command.upgrade(alembic_config(database_url, pgbouncer=pgbouncer), revision)
