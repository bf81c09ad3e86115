"""Transactional enqueue: a job is sent if and only if the transaction that asked for it commits.

`enqueue_async(session, task_name, **kwargs)` writes one row into the `articles_outbox` table in
the caller's open transaction and returns the task id the job will carry. The row commits or
rolls back with the caller's own writes; a relay (`articles outbox relay`) publishes committed
rows to the broker and deletes them. Delivery is at least once: a relay that dies between
publishing and deleting publishes the row again, with the same task id.

```python
async with session.begin():
    session.add(order)
    task_id = await outbox.enqueue_async(session, "articles.ingest", title=..., body=...)
```

For the known task names the keyword arguments are validated against the contract at once
(`InvalidPayload`, nothing written); other task names need JSON-serialisable arguments. Celery
publish options go in the reserved keyword `options=` (see `PublishOptions`).

The table is defined here on a `MetaData` of its own (`metadata`), so a service adds it to its
Alembic metadata (`target_metadata = [Base.metadata, outbox.metadata]`) or prints its DDL with
`articles-client outbox ddl`. Needs SQLAlchemy (the client's `outbox` extra); the relay needs the
table to be in PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Executable,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from articles_client.contract import PAYLOADS, describe_validation, parse_payload
from articles_client.errors import InvalidPayload, NotInTransaction

__all__ = [
    "CHANNEL",
    "OPTIONS_KEYWORD",
    "TABLE_NAME",
    "PublishOptions",
    "enqueue",
    "enqueue_async",
    "metadata",
    "outbox_table",
]

TABLE_NAME: Final = "articles_outbox"
# The relay LISTENs here; PostgreSQL delivers the NOTIFY only when the enqueuing transaction
# commits, and never for one that rolls back.
CHANNEL: Final = "articles_outbox"
OPTIONS_KEYWORD: Final = "options"
MAX_TASK_NAME_CHARS: Final = 255

metadata = MetaData()

outbox_table = Table(
    TABLE_NAME,
    metadata,
    # SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("task_id", String(64), nullable=False),
    Column("task_name", String(MAX_TASK_NAME_CHARS), nullable=False),
    Column("kwargs", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    Column("options", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    Column(
        "created_at",
        DateTime(timezone=True),
        server_default=text("CURRENT_TIMESTAMP"),
        nullable=False,
    ),
    # Publish attempts that failed for this row alone (not a broker outage); the relay stops
    # trying a row after a few, and `articles status` shows it.
    Column("attempts", Integer(), server_default=text("0"), nullable=False),
    Column("last_error", Text(), nullable=True),
)


class PublishOptions(BaseModel):
    """Celery publish options a job may carry, in `options=`.

    `countdown` counts from the moment the relay publishes (commit time plus the relay's delay,
    milliseconds when it keeps up); use `eta` for a fixed time. `expires` is seconds after
    publishing or a time. `queue` overrides the contract's routing; leave it out for public tasks.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    countdown: float | None = Field(default=None, ge=0)
    eta: datetime | None = None
    expires: float | datetime | None = None
    queue: str | None = Field(default=None, min_length=1, max_length=255)
    priority: int | None = Field(default=None, ge=0, le=255)

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


async def enqueue_async(
    session: AsyncSession | AsyncConnection, task_name: str, /, **kwargs: Any
) -> str:
    """Write the job `task_name(**kwargs)` in the session's open transaction; return its task id.

    Raises `NotInTransaction` if the session has no transaction open (use `session.begin()`), and
    `InvalidPayload` (writing nothing) if the arguments break the contract. The job is published
    after the transaction commits, and never if it rolls back.
    """
    row = _row(task_name, kwargs)
    _require_transaction(session)
    if isinstance(session, AsyncSession):
        await session.execute(_statement(session.get_bind().dialect, row))
    else:
        await session.execute(_statement(session.dialect, row))
    return str(row["task_id"])


def enqueue(session: Session | Connection, task_name: str, /, **kwargs: Any) -> str:
    """`enqueue_async` for a synchronous `Session` or `Connection` (psycopg and the like)."""
    row = _row(task_name, kwargs)
    _require_transaction(session)
    if isinstance(session, Session):
        session.execute(_statement(session.get_bind().dialect, row))
    else:
        session.execute(_statement(session.dialect, row))
    return str(row["task_id"])


def _require_transaction(session: AsyncSession | AsyncConnection | Session | Connection) -> None:
    # Outside a transaction the row would autocommit (or autobegin a transaction the caller
    # never commits): neither is "sent if and only if the caller's transaction commits".
    if not session.in_transaction():
        raise NotInTransaction(
            "outbox.enqueue needs an open transaction on the session: call it inside "
            "`async with session.begin():` (or `with session.begin():`)"
        )


def _row(task_name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(task_name, str) or not 0 < len(task_name) <= MAX_TASK_NAME_CHARS:
        raise InvalidPayload(
            f"task_name: must be a non-empty string of at most {MAX_TASK_NAME_CHARS} characters"
        )
    options = _options(task_name, kwargs.pop(OPTIONS_KEYWORD, None))
    model = PAYLOADS.get(task_name)
    if model is not None:
        payload = parse_payload(model, task_name, (), kwargs).model_dump(exclude_defaults=True)
    else:
        payload = _plain_json(task_name, kwargs)
    return {
        "task_id": str(uuid.uuid4()),
        "task_name": task_name,
        "kwargs": payload,
        "options": options,
    }


def _options(task_name: str, options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidPayload(f"{task_name}: options: must be a dict of Celery publish options")
    try:
        return PublishOptions.model_validate(options).as_json()
    except ValidationError as exc:
        problems = describe_validation(exc).replace("; ", "; options.")
        raise InvalidPayload(f"{task_name}: options.{problems}") from None


def _plain_json(task_name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    # The row is JSON in the database and the message JSON on the wire: refuse what JSON cannot
    # hold now, in the caller's transaction, not later in the relay.
    for name, value in kwargs.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidPayload(f"{task_name}: {name}: not plain JSON ({exc})") from None
    return kwargs


def _statement(dialect: Dialect, row: dict[str, Any]) -> Executable:
    queued = insert(outbox_table).values(**row)
    if dialect.name != "postgresql":
        return queued
    # One round trip: the insert and the NOTIFY that wakes the relay at commit.
    inserted = queued.returning(outbox_table.c.id).cte("queued")
    return select(func.pg_notify(CHANNEL, "")).select_from(inserted)
