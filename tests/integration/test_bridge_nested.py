"""Nested bridge calls fail fast under both bridges: a coroutine on the bridge that calls back
into sync code using the bridge gets `NestedBridgeCall` at once. Under the `loop` bridge the
same call used to wait forever for the loop it was blocking, and so did every later call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.errors import NestedBridgeCall
from tests.support.env import DATABASE_URL
from worker.runtime import bridge

pytestmark = pytest.mark.integration


@pytest.fixture(params=["nullpool", "loop", "loop-inline"])
def any_bridge(request: pytest.FixtureRequest, clean_db: str) -> Iterator[bridge.Bridge]:
    made: bridge.Bridge
    if request.param.startswith("loop"):
        inline = request.param == "loop-inline"
        made = bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=2, inline=inline)
    else:
        made = bridge.NullPoolBridge(DATABASE_URL, cancel_timeout=10)
    yield made
    made.close()


async def select_one(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT 1"))).scalar_one())


def test_sync_code_called_from_a_coroutine_cannot_cross_again(any_bridge: bridge.Bridge) -> None:
    def legacy_sync_helper() -> int:  # sync code that uses the bridge, as a library might
        return any_bridge.run_in_session(select_one)

    async def outer(session: AsyncSession) -> int:
        await select_one(session)
        return legacy_sync_helper()  # blocks the loop thread: the deadlock case

    started = time.monotonic()
    with pytest.raises(NestedBridgeCall, match=f"nested bridge call \\({any_bridge.name}"):
        any_bridge.run_in_session(outer)
    assert time.monotonic() - started < 1.0
    assert any_bridge.run_in_session(select_one) == 1  # the bridge is still usable


def test_sync_to_async_round_trip_is_refused_too(any_bridge: bridge.Bridge) -> None:
    def legacy_sync_helper() -> int:
        return any_bridge.run_in_session(select_one)

    async def outer(session: AsyncSession) -> int:
        return await sync_to_async(legacy_sync_helper)()

    started = time.monotonic()
    with pytest.raises(NestedBridgeCall):
        any_bridge.run_in_session(outer)
    assert time.monotonic() - started < 1.0
    assert any_bridge.run_in_session(select_one) == 1


def test_calls_after_one_another_are_not_nested(any_bridge: bridge.Bridge) -> None:
    # The marker is reset when a call ends, even though asgiref copies context back out.
    assert [any_bridge.run_in_session(select_one) for _ in range(3)] == [1, 1, 1]
