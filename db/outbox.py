"""The outbox's backlog in the articles database, for `articles status`.

The table itself belongs to the client (`articles_client.outbox`); migration 0003 creates it here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.outbox import outbox_table as outbox


async def backlog(session: AsyncSession) -> dict[str, Any]:
    """Rows waiting, the age in seconds of the oldest (None when empty), and rows failing alone."""
    waiting, failing = (
        await session.execute(
            select(func.count(), func.count().filter(outbox.c.attempts > 0)).select_from(outbox)
        )
    ).one()
    # The oldest row is the lowest id: the primary key answers without a scan. Its age is taken
    # on the database's clock, the one that stamped it.
    oldest = (
        await session.execute(
            select(outbox.c.created_at, func.now(type_=DateTime(timezone=True)))
            .order_by(outbox.c.id)
            .limit(1)
        )
    ).first()
    age = None if oldest is None else round((_utc(oldest[1]) - _utc(oldest[0])).total_seconds(), 3)
    return {"backlog": waiting, "oldest_age_seconds": age, "failing": failing}


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive UTC timestamps.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
