"""The `loop` bridge against real PostgreSQL: cancellation, pool health, contextvars, shutdown.

The soft time limit is reproduced as Celery's prefork pool delivers it: SIGUSR1 arrives while the
main thread waits on the bridge, and the signal handler raises `SoftTimeLimitExceeded` there.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator

import pytest
from celery.exceptions import SoftTimeLimitExceeded
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


@pytest.fixture(params=["threaded", "inline"])
def loop_bridge(request: pytest.FixtureRequest, clean_db: str) -> Iterator[bridge.LoopBridge]:
    """Both ways of running the loop: in its own thread, and in the caller's (prefork, solo)."""
    inline = request.param == "inline"
    b = bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=2, inline=inline)
    yield b
    b.close()


def backends() -> list[dict[str, object]]:
    """Other backends connected to this run's database: pid, state, query."""
    return sql(
        "SELECT pid, state, query FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'"
    )


async def backend_pid(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def test_soft_time_limit_cancels_rolls_back_and_leaves_the_pool_healthy(
    loop_bridge: bridge.LoopBridge,
) -> None:
    (article_id,) = add_articles(1)
    started = time.monotonic()
    with soft_time_limit(INTERRUPT_AFTER), pytest.raises(SoftTimeLimitExceeded):
        loop_bridge.run_in_session(lambda s: write_then_sleep(s, article_id))
    elapsed = time.monotonic() - started

    # The exception propagated promptly, and only once the server stopped running the query.
    assert INTERRUPT_AFTER <= elapsed < SLEEP_SECONDS - 0.5
    assert [b for b in backends() if "pg_sleep" in str(b["query"]) and b["state"] != "idle"] == []
    # Nothing commits later, once the sleep would have ended.
    time.sleep(max(0.0, started + SLEEP_SECONDS + 0.5 - time.monotonic()))
    assert summary_of(article_id) is None

    # The next calls work, on the same loop and pool, and no backend leaked: at most the pool's
    # connections are open, all idle (not "idle in transaction").
    async def write(session: AsyncSession) -> int:
        await session.execute(
            text("UPDATE articles SET summary = 'next call' WHERE id = :id"), {"id": article_id}
        )
        await session.commit()
        return await backend_pid(session)

    pids = {loop_bridge.run_in_session(write) for _ in range(5)}
    assert summary_of(article_id) == "next call"
    assert len(pids) == 1
    open_backends = backends()
    assert len(open_backends) <= 2
    assert {b["state"] for b in open_backends} == {"idle"}


def test_interrupt_before_the_loop_starts_the_call(loop_bridge: bridge.LoopBridge) -> None:
    """An exception raised as the call is handed over never leaves a coroutine behind."""
    if loop_bridge._thread is None:
        pytest.skip("inline, nothing is handed over: the call starts in the caller's thread")
    (article_id,) = add_articles(1)

    def stall() -> None:
        time.sleep(0.3)

    # Keep the loop busy so the handed-over call cannot start before the interrupt.
    loop_bridge._loop.call_soon_threadsafe(stall)
    with soft_time_limit(0.05), pytest.raises(SoftTimeLimitExceeded):
        loop_bridge.run_in_session(lambda s: write_then_sleep(s, article_id))
    time.sleep(0.5)
    assert summary_of(article_id) is None
    assert loop_bridge.run_in_session(backend_pid) > 0


def test_error_in_the_coroutine_rolls_back_and_is_reraised(
    loop_bridge: bridge.LoopBridge,
) -> None:
    (article_id,) = add_articles(1)

    async def write_then_fail(session: AsyncSession) -> None:
        await session.execute(
            text("UPDATE articles SET summary = 'half done' WHERE id = :id"), {"id": article_id}
        )
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop_bridge.run_in_session(write_then_fail)
    assert summary_of(article_id) is None
    assert {b["state"] for b in backends()} == {"idle"}


def test_killed_connection_is_transient_and_then_replaced(
    loop_bridge: bridge.LoopBridge,
) -> None:
    """A pooled connection killed server-side (as by a database restart) is found dead at its
    first use, without a pre-ping: that call fails as transient, and the pool discards the
    connection, so the retry gets a new one."""
    first = loop_bridge.run_in_session(backend_pid)
    sql("SELECT pg_terminate_backend(:pid)", pid=first)
    time.sleep(0.2)
    with pytest.raises(TransientError):
        loop_bridge.run_in_session(backend_pid)
    second = loop_bridge.run_in_session(backend_pid)
    assert second != first

    async def killed(session: AsyncSession) -> None:
        await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    with pytest.raises(TransientError):
        loop_bridge.run_in_session(killed)
    assert loop_bridge.run_in_session(backend_pid) not in {first, second}


def test_connections_are_reused_and_bounded(loop_bridge: bridge.LoopBridge) -> None:
    pids = {loop_bridge.run_in_session(backend_pid) for _ in range(20)}
    assert len(pids) == 1


def test_concurrent_callers_share_the_loop_and_pool(clean_db: str) -> None:
    """The `threads` pool: several threads call at once on one loop, each on its own connection
    from a pool sized to the concurrency, so connections are reused, never opened per call."""
    loop_bridge = bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=4)

    async def slow_pid(session: AsyncSession) -> int:
        await session.execute(text("SELECT pg_sleep(0.05)"))
        return await backend_pid(session)

    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.extend(loop_bridge.run_in_session(slow_pid) for _ in range(5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loop_bridge.close()
    assert errors == []
    assert len(results) == 20
    assert len(set(results)) <= 4


def test_contextvars_reach_the_coroutine(loop_bridge: bridge.LoopBridge) -> None:
    async def read() -> str:
        return request_id.get()

    async def read_in_session(session: AsyncSession) -> str:
        return request_id.get()

    token = request_id.set("req-42")
    try:
        assert loop_bridge.run(read) == "req-42"
        assert loop_bridge.run_in_session(read_in_session) == "req-42"
    finally:
        request_id.reset(token)
    assert loop_bridge.run(read) == "unset"


@pytest.mark.parametrize("inline", [False, True], ids=["threaded", "inline"])
def test_close_disposes_connections_without_warnings(clean_db: str, inline: bool) -> None:
    b = bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=2, inline=inline)
    pid = b.run_in_session(backend_pid)
    gc.collect()  # earlier tests' garbage is not this test's business
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b.close()
        del b
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert sql("SELECT pid FROM pg_stat_activity WHERE pid = :pid", pid=pid) == []


def test_closed_bridge_refuses_calls(clean_db: str) -> None:
    b = bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=1)
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.run_in_session(backend_pid)


def test_process_bridge_is_recreated_after_fork(
    clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forked child never uses its parent's loop or connections: it builds its own."""
    monkeypatch.setattr(
        bridge, "_create", lambda: bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=1)
    )
    parent = bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=1)
    parent_pid = parent.run_in_session(backend_pid)
    saved = bridge._state
    bridge._state = (os.getpid(), parent)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            own = bridge.get_bridge()
            pids = {own.run_in_session(backend_pid) for _ in range(3)}
            os.write(write, f"{own is not parent} {sorted(pids)}".encode())
            bridge.shutdown()
            code = 0
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(child, 0)
        report = os.read(read, 1000).decode()
    finally:
        bridge._state = saved
        os.close(read)
        os.close(write)
    assert os.waitstatus_to_exitcode(status) == 0
    fresh, pids = report.split(" ", 1)
    assert fresh == "True"
    assert str(parent_pid) not in pids
    # The parent's connection survived the child: same backend, still usable.
    assert parent.run_in_session(backend_pid) == parent_pid
    parent.close()


def test_inline_soft_limit_signal_outside_a_call_is_celerys_again(clean_db: str) -> None:
    """Inline, SIGUSR1 cancels only while a call runs; between calls the previous handler (in a
    prefork child, Celery's soft time limit) is back, and a limit that fires as the coroutine
    returns still fails the call."""
    b = bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=1, inline=True)
    try:
        raised: list[int] = []
        previous = signal.signal(signal.SIGUSR1, lambda signum, frame: raised.append(signum))
        try:
            assert b.run_in_session(backend_pid) > 0
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
            assert raised == [signal.SIGUSR1], "the handler outside calls is the previous one"

            async def signal_self_then_return() -> str:
                os.kill(os.getpid(), signal.SIGUSR1)
                return "finished"

            with pytest.raises(SoftTimeLimitExceeded):
                b.run(signal_self_then_return)
            assert raised == [signal.SIGUSR1], "during a call the signal went to the bridge"
            assert b.run_in_session(backend_pid) > 0, "and the bridge works on"
        finally:
            signal.signal(signal.SIGUSR1, previous)
    finally:
        b.close()


def test_inline_without_the_signal_leaves_sigusr1_alone(clean_db: str) -> None:
    """Under the solo pool SIGUSR1 is Celery's stack dump, not a time limit: calls ignore it."""
    b = bridge.LoopBridge(
        DATABASE_URL, cancel_timeout=10, pool_size=1, inline=True, soft_limit_signal=False
    )
    try:
        raised: list[int] = []
        previous = signal.signal(signal.SIGUSR1, lambda signum, frame: raised.append(signum))
        try:

            async def signal_self_then_return() -> str:
                os.kill(os.getpid(), signal.SIGUSR1)
                await asyncio.sleep(0.01)
                return "finished"

            assert b.run(signal_self_then_return) == "finished"
            assert raised == [signal.SIGUSR1]
        finally:
            signal.signal(signal.SIGUSR1, previous)
    finally:
        b.close()
