"""The reaper with a short lease: claims held by a dead worker come back, or fail when spent."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client import contract
from db import queries
from db.queries import Claimed, Outcome
from tests.integration.helpers import add_articles, run_in_session, sql
from worker.runtime.app import app
from worker.runtime.settings import get_settings

pytestmark = pytest.mark.integration

LEASE = 1.0


async def _claim(session: AsyncSession, *, limit: int, token: str) -> list[Claimed]:
    claimed = await queries.claim_pending(session, limit=limit, token=token)
    await session.commit()
    return claimed


async def _write(session: AsyncSession, *, token: str, ids: list[int]) -> dict[int, str]:
    outcomes = [Outcome(id=i, status="done", word_count=1) for i in ids]
    written = await queries.write_outcomes(session, token=token, outcomes=outcomes)
    await session.commit()
    return written


def claim(limit: int) -> tuple[str, list[int]]:
    """Claim like a pipeline batch does, then never write: the worker died holding them."""
    token = uuid.uuid4().hex
    claimed = run_in_session(functools.partial(_claim, limit=limit, token=token))
    return token, [c.id for c in claimed]


@pytest.fixture
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process worker reads the same settings object when the task runs.
    settings = get_settings()
    monkeypatch.setattr(settings, "claim_lease_seconds", LEASE)
    monkeypatch.setattr(settings, "max_attempts", 3)


def statuses() -> dict[int, str]:
    return {r["id"]: r["status"] for r in sql("SELECT id, status FROM articles")}


def test_expired_claims_return_to_pending_or_fail_after_max_attempts(
    live_worker: Any, short_lease: None
) -> None:
    ids = add_articles(4)
    _, dead = claim(3)
    assert dead == ids[:3]
    sql("UPDATE articles SET attempts = 3 WHERE id = :id", id=ids[2])
    time.sleep(LEASE + 1.1)  # past the lease (SQL timestamps; one extra second of margin)
    _, fresh = claim(1)  # a live claim, well inside its lease
    assert fresh == [ids[3]]

    result = app.send_task(contract.REAP_STALE).get(timeout=30)

    assert result == {"returned": 2, "failed": 1, "abandoned_runs": 0}
    assert statuses() == {
        ids[0]: "pending",
        ids[1]: "pending",
        ids[2]: "failed",
        ids[3]: "processing",
    }
    (spent,) = sql("SELECT error, claim_token FROM articles WHERE id = :id", id=ids[2])
    assert spent == {"error": queries.gave_up_message(3), "claim_token": None}


def test_a_late_write_from_the_dead_worker_changes_nothing(
    live_worker: Any, short_lease: None
) -> None:
    ids = add_articles(2)
    dead_token, dead = claim(2)
    time.sleep(LEASE + 1.1)
    assert app.send_task(contract.REAP_STALE).get(timeout=30)["returned"] == 2

    outcome = app.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 10}).get(timeout=30)
    late = run_in_session(functools.partial(_write, token=dead_token, ids=dead))

    assert outcome["claimed"] == 2
    assert late == {}
    rows = sql("SELECT status, times_processed, attempts FROM articles ORDER BY id")
    assert rows == [{"status": "done", "times_processed": 1, "attempts": 2}] * len(ids)
