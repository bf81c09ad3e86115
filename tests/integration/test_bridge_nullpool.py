"""The `nullpool` bridge against real PostgreSQL: cancellation, errors, contextvars, connections.

The soft time limit is reproduced as Celery's prefork pool delivers it: SIGUSR1 arrives while the
main thread waits on the bridge, and the signal handler raises `SoftTimeLimitExceeded` there.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.errors import TransientError
from tests.integration.helpers import (
    SLEEP_SECONDS,
    add_articles,
    soft_time_limit,
    sql,
    summary_of,
    write_then_sleep,
)
from tests.support.env import DATABASE_URL
from worker.runtime import bridge

pytestmark = pytest.mark.integration

INTERRUPT_AFTER = 0.5

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@pytest.fixture
def nullpool(clean_db: str) -> Iterator[bridge.NullPoolBridge]:
    b = bridge.NullPoolBridge(DATABASE_URL, cancel_timeout=10)
    yield b
    b.close()


def active_sleeps() -> list[dict[str, object]]:
    """Backends of this database still running a pg_sleep query (other than this one)."""
    return sql(
        "SELECT pid, state, query FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND state <> 'idle' AND query ILIKE '%pg_sleep%'"
    )


def test_soft_time_limit_cancels_the_coroutine_and_rolls_back(
    nullpool: bridge.NullPoolBridge,
) -> None:
    (article_id,) = add_articles(1)
    started = time.monotonic()
    with soft_time_limit(INTERRUPT_AFTER), pytest.raises(SoftTimeLimitExceeded):
        nullpool.run_in_session(lambda s: write_then_sleep(s, article_id))
    elapsed = time.monotonic() - started

    # The exception propagated promptly: the bridge did not wait out the query.
    assert INTERRUPT_AFTER <= elapsed < SLEEP_SECONDS - 0.5
    # By the time the caller sees the exception, the server is no longer running the query.
    assert active_sleeps() == []
    # And nothing commits later, once the sleep would have ended.
    time.sleep(max(0.0, started + SLEEP_SECONDS + 0.5 - time.monotonic()))
    assert summary_of(article_id) is None

    # The bridge still works afterwards: a new loop, a new connection.
    async def write(session: AsyncSession) -> int:
        await session.execute(
            text("UPDATE articles SET summary = 'next call' WHERE id = :id"), {"id": article_id}
        )
        await session.commit()
        return int((await session.execute(text("SELECT 1"))).scalar_one())

    assert nullpool.run_in_session(write) == 1
    assert summary_of(article_id) == "next call"


def test_module_entry_point_is_cancelled_the_same_way(clean_db: str) -> None:
    """`bridge.run_in_session`, the one entry point tasks use, gives the same guarantee."""
    (article_id,) = add_articles(1)
    started = time.monotonic()
    with soft_time_limit(INTERRUPT_AFTER), pytest.raises(SoftTimeLimitExceeded):
        bridge.run_in_session(lambda s: write_then_sleep(s, article_id))
    assert time.monotonic() - started < SLEEP_SECONDS - 0.5
    assert active_sleeps() == []
    time.sleep(max(0.0, started + SLEEP_SECONDS + 0.5 - time.monotonic()))
    assert summary_of(article_id) is None


def test_error_in_the_coroutine_rolls_back_its_writes(nullpool: bridge.NullPoolBridge) -> None:
    first, second = add_articles(2)
    sql("UPDATE articles SET external_id = 'taken' WHERE id = :id", id=first)

    async def write_then_violate(session: AsyncSession) -> None:
        await session.execute(
            text("UPDATE articles SET summary = 'half done' WHERE id = :id"), {"id": second}
        )
        await session.execute(
            text("UPDATE articles SET external_id = 'taken' WHERE id = :id"), {"id": second}
        )
        await session.commit()

    # A constraint violation is a bug or bad data, not something a retry fixes.
    with pytest.raises(sa_exc.IntegrityError):
        nullpool.run_in_session(write_then_violate)
    assert summary_of(second) is None


def test_dropped_connection_is_a_transient_error(nullpool: bridge.NullPoolBridge) -> None:
    async def killed(session: AsyncSession) -> None:
        await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    with pytest.raises(TransientError) as caught:
        nullpool.run_in_session(killed)
    assert caught.value.__cause__ is not None
    assert nullpool.run_in_session(_select_one) == 1


def test_contextvars_reach_the_coroutine(nullpool: bridge.NullPoolBridge) -> None:
    async def read() -> str:
        return request_id.get()

    async def read_in_session(session: AsyncSession) -> str:
        return request_id.get()

    token = request_id.set("req-42")
    try:
        assert nullpool.run(read) == "req-42"
        assert nullpool.run_in_session(read_in_session) == "req-42"
    finally:
        request_id.reset(token)


def test_no_connection_outlives_a_call(nullpool: bridge.NullPoolBridge) -> None:
    async def own_pid(session: AsyncSession) -> int:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    pids = {nullpool.run_in_session(own_pid) for _ in range(3)}
    # NullPool: every call logs in afresh, and closes its connection before returning.
    assert len(pids) == 3
    still_open = sql("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)", pids=sorted(pids))
    assert still_open == []


def test_calling_from_inside_an_event_loop_is_refused(nullpool: bridge.NullPoolBridge) -> None:
    import asyncio

    async def nested() -> None:
        nullpool.run(_noop)

    with pytest.raises(RuntimeError, match="event loop"):
        asyncio.run(nested())


async def _noop() -> None:
    return None


async def _select_one(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT 1"))).scalar_one())
