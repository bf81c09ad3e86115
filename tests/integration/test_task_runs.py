"""`task_runs`: the "this task id already ran" marker, against real PostgreSQL transactions."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db import queries
from db.engine import make_sessionmaker
from tests.integration.helpers import run_with_engine, sql

pytestmark = pytest.mark.integration


async def _race(engine: AsyncEngine, first_commits: bool) -> bool:
    """The first run inserts the marker and holds its transaction; a duplicate tries meanwhile."""
    maker = make_sessionmaker(engine)
    async with maker() as first, maker() as second:
        assert await queries.mark_task_run(first, task_id="t-1", task_name="x.y")
        duplicate = asyncio.create_task(
            queries.mark_task_run(second, task_id="t-1", task_name="x.y")
        )
        await asyncio.sleep(0.5)
        assert not duplicate.done(), "the duplicate must wait for the first run's transaction"
        await (first.commit() if first_commits else first.rollback())
        ran_again = await asyncio.wait_for(duplicate, 10)
        await second.commit()
        return ran_again


@pytest.mark.parametrize("first_commits", [True, False])
def test_a_duplicate_waits_then_runs_only_if_the_first_rolled_back(
    clean_db: str, first_commits: bool
) -> None:
    ran_again = run_with_engine(lambda engine: _race(engine, first_commits))
    assert ran_again is (not first_commits)
    rows = sql("SELECT task_id, task_name FROM task_runs")
    assert [dict(r) for r in rows] == [{"task_id": "t-1", "task_name": "x.y"}]
