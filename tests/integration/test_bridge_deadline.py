"""The bridge's own soft limit and its lifespans, on both bridges, against real PostgreSQL.

No signal is involved here: the deadline is enforced on the loop, which is what makes the soft
limit hold under the threads and solo pools, where Celery enforces none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tests.integration.helpers import SLEEP_SECONDS, add_articles, summary_of, write_then_sleep
from tests.support.env import DATABASE_URL
from worker.runtime import bridge
from worker.runtime.lifespan import lifespan

pytestmark = pytest.mark.integration


@pytest.fixture(params=["nullpool", "loop", "loop-inline"])
def any_bridge(request: pytest.FixtureRequest, clean_db: str) -> Iterator[bridge.Bridge]:
    b: bridge.Bridge
    if request.param.startswith("loop"):
        inline = request.param == "loop-inline"
        b = bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=2, inline=inline)
    else:
        b = bridge.NullPoolBridge(DATABASE_URL, cancel_timeout=10)
    yield b
    b.close()


def test_deadline_cancels_the_write_and_rolls_back(any_bridge: bridge.Bridge) -> None:
    (article_id,) = add_articles(1)
    started = time.monotonic()
    with pytest.raises(SoftTimeLimitExceeded, match=r"soft time limit \(0.5s\)"):
        any_bridge.run_in_session(lambda s: write_then_sleep(s, article_id), soft_limit=0.5)
    assert time.monotonic() - started < SLEEP_SECONDS - 1
    time.sleep(SLEEP_SECONDS)
    assert summary_of(article_id) is None
    # The bridge serves the next call normally.
    assert any_bridge.run(lambda: asyncio.sleep(0, "next"), soft_limit=5) == "next"


def test_a_timeout_of_the_coroutine_itself_is_not_a_soft_limit(any_bridge: bridge.Bridge) -> None:
    async def times_out() -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)

    with pytest.raises(TimeoutError):
        any_bridge.run(times_out, soft_limit=5)


entered: list[str] = []


@lifespan
@asynccontextmanager
async def _probe() -> AsyncIterator[asyncio.AbstractEventLoop]:
    entered.append("in")
    try:
        yield asyncio.get_running_loop()
    finally:
        entered.append("out")


async def _loop_of_probe(b: bridge.Bridge) -> bool:
    async with b.resources() as resources:
        return await resources.get(_probe) is asyncio.get_running_loop()


def test_lifespans_live_as_long_as_the_bridges_loop(any_bridge: bridge.Bridge) -> None:
    entered.clear()
    assert any_bridge.run(lambda: _loop_of_probe(any_bridge))
    assert any_bridge.run(lambda: _loop_of_probe(any_bridge))
    if isinstance(any_bridge, bridge.LoopBridge):
        assert entered == ["in"]
        any_bridge.close()
        assert entered == ["in", "out"]
    else:
        assert entered == ["in", "out", "in", "out"]


def test_an_unregistered_factory_is_refused(any_bridge: bridge.Bridge) -> None:
    @asynccontextmanager
    async def not_registered() -> AsyncIterator[int]:
        yield 1

    async def ask() -> int:
        async with any_bridge.resources() as resources:
            return await resources.get(not_registered)

    with pytest.raises(LookupError, match="decorate it with @lifespan"):
        any_bridge.run(ask)
