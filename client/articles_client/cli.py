"""`articles-client`: the client distribution's command.

`articles-client outbox ddl` prints the outbox table's DDL for PostgreSQL (for a service that
manages its schema by hand, or to paste into a migration); `--apply URL` creates the table in that
database if it is missing. A service using Alembic adds `articles_client.outbox.metadata` to its
`target_metadata` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from articles_client.errors import ArticlesError
from articles_client.urls import mask_url


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `articles-client` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        from articles_client import outbox
    except ImportError as exc:  # the client installed without its `outbox` extra
        print(
            f"error: the outbox needs SQLAlchemy: pip install 'articles-worker-client[outbox]' "
            f"({exc})",
            file=sys.stderr,
        )
        return 2
    if args.apply is None:
        print(ddl())
        return 0
    try:
        apply(args.apply)
    except (ArticlesError, OSError, ImportError) as exc:
        print(f"error: cannot apply to {mask_url(args.apply)}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a driver's error: one line, no traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"error: cannot apply to {mask_url(args.apply)}: {type(exc).__name__}: {first}",
            file=sys.stderr,
        )
        return 1
    print(f"{outbox.TABLE_NAME} is present in {mask_url(args.apply)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="articles-client")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    outbox = commands.add_parser("outbox", help="the transactional outbox table")
    actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    ddl_cmd = actions.add_parser("ddl", help="print the outbox table's DDL (PostgreSQL)")
    ddl_cmd.add_argument(
        "--apply",
        metavar="URL",
        default=None,
        help="create the table in this database if missing (a SQLAlchemy URL; "
        "postgresql+asyncpg://... or postgresql+psycopg://...)",
    )
    return parser


def ddl() -> str:
    """The CREATE TABLE statement for PostgreSQL, ending with a semicolon."""
    from sqlalchemy.dialects.postgresql.base import PGDialect
    from sqlalchemy.schema import CreateTable

    from articles_client.outbox import outbox_table as table

    statement = CreateTable(table, if_not_exists=True).compile(dialect=PGDialect())  # type: ignore[no-untyped-call]
    return f"{str(statement).strip()};"


def apply(url: str) -> None:
    """Create the outbox table at `url` unless it exists (sync or async driver)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from articles_client.outbox import metadata

    if make_url(url).get_dialect().is_async:
        engine = create_async_engine(url)

        async def create() -> None:
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(metadata.create_all)
            finally:
                await engine.dispose()

        asyncio.run(create())
        return
    sync_engine = create_engine(url)
    try:
        metadata.create_all(sync_engine)
    finally:
        sync_engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
