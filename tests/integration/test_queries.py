"""The query functions of `db.queries` on real PostgreSQL, including real concurrent claimers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Literal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db import queries
from db.engine import make_sessionmaker
from db.queries import Outcome
from tests.integration.helpers import add_articles, run_in_session, run_with_engine, sql

pytestmark = pytest.mark.integration


def token() -> str:
    return uuid.uuid4().hex


def done(article_id: int, words: int = 3) -> Outcome:
    return Outcome(
        id=article_id,
        status="done",
        word_count=words,
        reading_time_seconds=1,
        summary="s.",
        keywords=["alpha"],
    )


# --- insert_article ---------------------------------------------------------------------------


def test_insert_is_idempotent_on_external_id(clean_db: str) -> None:
    async def go(session: AsyncSession) -> list[tuple[int, bool]]:
        results = [
            await queries.insert_article(
                session, title="t", body="b", source_url=None, external_id="ext-1"
            )
            for _ in range(3)
        ]
        await session.commit()
        return results

    (first_id, created), *repeats = run_in_session(go)
    assert created is True
    assert repeats == [(first_id, False), (first_id, False)]
    assert sql("SELECT count(*) AS n FROM articles")[0]["n"] == 1


def test_insert_without_external_id_always_creates(clean_db: str) -> None:
    async def go(session: AsyncSession) -> list[tuple[int, bool]]:
        results = [
            await queries.insert_article(
                session, title="t", body="b", source_url=None, external_id=None
            )
            for _ in range(2)
        ]
        await session.commit()
        return results

    (a, a_created), (b, b_created) = run_in_session(go)
    assert a != b
    assert (a_created, b_created) == (True, True)


def test_concurrent_inserts_of_one_external_id_store_one_row(clean_db: str) -> None:
    async def one(engine: AsyncEngine) -> tuple[int, bool]:
        async with make_sessionmaker(engine)() as session:
            result = await queries.insert_article(
                session, title="t", body="b", source_url=None, external_id="same"
            )
            await session.commit()
            return result

    async def many(engine: AsyncEngine) -> list[tuple[int, bool]]:
        return list(await asyncio.gather(*(one(engine) for _ in range(8))))

    results = run_with_engine(many)
    assert len({article_id for article_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_rows_inserted_by_plain_sql_get_server_defaults(clean_db: str) -> None:
    (article_id,) = add_articles(1)
    row = sql("SELECT * FROM articles WHERE id = :id", id=article_id)[0]
    assert row["status"] == "pending"
    assert row["attempts"] == 0
    assert row["times_processed"] == 0
    assert row["created_at"] is not None
    assert row["updated_at"] is not None
    run = sql("INSERT INTO pipeline_runs (batch_size) VALUES (10) RETURNING *")[0]
    assert (run["status"], run["claimed"], run["succeeded"], run["failed"]) == ("running", 0, 0, 0)
    assert run["started_at"] is not None


# --- claim_pending -----------------------------------------------------------------------------


def test_claim_pending_takes_oldest_first_and_marks_them(clean_db: str) -> None:
    ids = add_articles(5)
    held_by = token()

    async def go(session: AsyncSession) -> list[int]:
        claimed = await queries.claim_pending(session, limit=3, token=held_by)
        await session.commit()
        return [c.id for c in claimed]

    assert run_in_session(go) == ids[:3]
    rows = sql("SELECT id, status, claim_token, attempts, claimed_at FROM articles ORDER BY id")
    assert [r["status"] for r in rows] == ["processing"] * 3 + ["pending"] * 2
    assert all(r["claim_token"] == held_by and r["attempts"] == 1 for r in rows[:3])
    assert all(r["claimed_at"] is not None for r in rows[:3])


async def _claim_and_hold(engine: AsyncEngine, limit: int, barrier: asyncio.Barrier) -> list[int]:
    """Claim inside a transaction that stays open until every claimer has claimed."""
    async with make_sessionmaker(engine)() as session:
        claimed = await queries.claim_pending(session, limit=limit, token=token())
        await barrier.wait()
        await session.commit()
        return [c.id for c in claimed]


def test_open_claims_skip_each_others_rows(clean_db: str) -> None:
    """All claimers hold their row locks at once: SKIP LOCKED must hand each different rows.

    Without SKIP LOCKED the second claimer would block on the first one's locks and the barrier
    would never be reached (the test times out); without the lock, they would share rows.
    """
    ids = add_articles(50)
    claimers, limit = 6, 7

    async def go(engine: AsyncEngine) -> list[list[int]]:
        barrier = asyncio.Barrier(claimers)
        return list(
            await asyncio.gather(
                *(_claim_and_hold(engine, limit, barrier) for _ in range(claimers))
            )
        )

    batches = run_with_engine(go, timeout=20)
    flat = [i for batch in batches for i in batch]
    assert all(len(batch) == limit for batch in batches)
    assert len(flat) == len(set(flat)) == claimers * limit
    assert set(flat) <= set(ids)


def test_concurrent_claimers_drain_the_queue_exactly_once(clean_db: str) -> None:
    ids = add_articles(400)

    async def drain(engine: AsyncEngine) -> list[int]:
        mine: list[int] = []
        maker = make_sessionmaker(engine)
        while True:
            async with maker() as session:
                claimed = await queries.claim_pending(session, limit=9, token=token())
                await session.commit()
            if not claimed:
                return mine
            mine.extend(c.id for c in claimed)

    async def go(engine: AsyncEngine) -> list[list[int]]:
        return list(await asyncio.gather(*(drain(engine) for _ in range(8))))

    per_claimer = run_with_engine(go, timeout=60)
    flat = [i for ids_ in per_claimer for i in ids_]
    assert sorted(flat) == ids  # every article claimed, none twice
    assert sum(1 for ids_ in per_claimer if ids_) > 1  # the claimers really overlapped
    assert sql("SELECT DISTINCT attempts FROM articles") == [{"attempts": 1}]


def _attempt(article_id: int, held_by: str, *, max_attempts: int = 3) -> queries.Attempt | None:
    async def go(session: AsyncSession) -> queries.Attempt | None:
        attempt = await queries.count_attempt(
            session,
            article_id=article_id,
            token=held_by,
            lease_seconds=120,
            max_attempts=max_attempts,
        )
        await session.commit()
        return attempt

    return run_in_session(go)


def test_count_attempt_reads_the_article_and_leaves_it_pending_under_its_token(
    clean_db: str,
) -> None:
    (article_id,) = add_articles(1)
    attempt = _attempt(article_id, "first")
    assert attempt is not None
    assert attempt.article is not None
    assert (attempt.article.id, attempt.article.attempts) == (article_id, 1)
    assert attempt.article.body == "alpha beta gamma. delta epsilon."
    (row,) = sql("SELECT status, attempts, claim_token FROM articles")
    assert row == {"status": "pending", "attempts": 1, "claim_token": "first"}


def test_count_attempt_skips_live_claims_and_takes_expired_ones(clean_db: str) -> None:
    (article_id,) = add_articles(1)
    sql(
        "UPDATE articles SET status = 'processing', attempts = 1, claim_token = 'run', "
        "claimed_at = now()"
    )
    assert _attempt(article_id, "late") is None  # held by a live claim
    sql("UPDATE articles SET claimed_at = now() - interval '10 minutes'")
    attempt = _attempt(article_id, "late")
    assert attempt is not None
    assert attempt.article is not None
    # Taken back from the expired claim: its holder's write no longer counts.
    assert _write("run", [done(article_id)]) == {}


def test_only_the_last_counted_attempt_writes(clean_db: str) -> None:
    """Two deliveries count attempts in turn: the first one's write is a no-op, the last
    one's counts, and the article is written once."""
    (article_id,) = add_articles(1)
    _attempt(article_id, "first")
    _attempt(article_id, "second")
    assert _write("first", [done(article_id)], held_as="pending") == {}
    assert _write("second", [done(article_id)], held_as="pending") == {article_id: "done"}
    assert _attempt(article_id, "third") is None  # done: not claimable
    (row,) = sql("SELECT status, attempts, times_processed FROM articles")
    assert row == {"status": "done", "attempts": 2, "times_processed": 1}


# --- retries: claim_retry, count_attempt, fail_exhausted ---------------------------------------


def _retry(*, held_by: str | None = None, max_attempts: int = 3) -> queries.Claimed | None:
    async def go(session: AsyncSession) -> queries.Claimed | None:
        claimed = await queries.claim_retry(
            session, token=held_by or token(), lease_seconds=120, max_attempts=max_attempts
        )
        await session.commit()
        return claimed

    return run_in_session(go)


def test_claim_retry_takes_expired_and_crashed_articles_one_at_a_time(clean_db: str) -> None:
    fresh, live, expired, crashed, spent = add_articles(5)
    sql(
        "UPDATE articles SET status = 'processing', attempts = 1, claimed_at = now() "
        "WHERE id = :id",
        id=live,
    )
    sql(
        "UPDATE articles SET status = 'processing', attempts = 2, "
        "claimed_at = now() - interval '10 minutes' WHERE id = :id",
        id=expired,
    )
    # A process_article whose work crashed: pending again, its attempt counted.
    sql("UPDATE articles SET attempts = 1 WHERE id = :id", id=crashed)
    sql(
        "UPDATE articles SET status = 'processing', attempts = 3, "
        "claimed_at = now() - interval '10 minutes' WHERE id = :id",
        id=spent,
    )

    first, second = _retry(), _retry()
    assert _retry() is None  # neither the fresh nor the live claim is a retry

    assert first is not None
    assert second is not None
    # Fewest attempts first, each attempt counted.
    assert (first.id, first.attempts) == (crashed, 2)
    assert (second.id, second.attempts) == (expired, 3)
    rows = {r["id"]: r for r in sql("SELECT id, status, error FROM articles")}
    assert rows[fresh]["status"] == "pending"
    assert rows[live]["status"] == "processing"
    assert rows[spent]["status"] == "failed"
    assert rows[spent]["error"] == queries.gave_up_message(3)


def test_claim_pending_leaves_articles_tried_before_to_claim_retry(clean_db: str) -> None:
    tried, fresh = add_articles(2)
    sql("UPDATE articles SET attempts = 1 WHERE id = :id", id=tried)
    assert _claim_all(token()) == [fresh]


def test_count_attempt_counts_until_the_attempts_are_spent(clean_db: str) -> None:
    (article_id,) = add_articles(1)
    # Three crashed attempts (each kept its count), then no more: marked failed.
    attempts = [_attempt(article_id, token()) for _ in range(4)]
    assert [a is not None and a.article is not None for a in attempts] == [True] * 3 + [False]
    assert attempts[3] == queries.Attempt(article=None)
    assert _attempt(article_id, token()) is None  # failed: not claimable
    (row,) = sql("SELECT status, attempts, error FROM articles")
    assert row == {"status": "failed", "attempts": 3, "error": queries.gave_up_message(3)}


# --- write_outcomes ----------------------------------------------------------------------------


def _claim_all(held_by: str) -> list[int]:
    async def go(session: AsyncSession) -> list[int]:
        claimed = await queries.claim_pending(session, limit=100, token=held_by)
        await session.commit()
        return [c.id for c in claimed]

    return run_in_session(go)


def _write(
    held_by: str,
    outcomes: list[Outcome],
    held_as: Literal["processing", "pending"] = "processing",
) -> dict[int, str]:
    async def go(session: AsyncSession) -> dict[int, str]:
        written = await queries.write_outcomes(
            session, token=held_by, outcomes=outcomes, held_as=held_as
        )
        await session.commit()
        return written

    return run_in_session(go)


def test_write_outcomes_applies_while_the_claim_holds(clean_db: str) -> None:
    held_by = token()
    add_articles(2)
    a, b = _claim_all(held_by)
    written = _write(held_by, [done(a, words=7), Outcome(id=b, status="failed", error="bad")])
    assert written == {a: "done", b: "failed"}
    rows = {r["id"]: r for r in sql("SELECT * FROM articles")}
    assert rows[a]["status"] == "done"
    assert rows[a]["word_count"] == 7
    assert rows[a]["keywords"] == ["alpha"]
    assert rows[a]["claim_token"] is None
    assert rows[a]["processed_at"] is not None
    assert rows[b]["status"] == "failed"
    assert rows[b]["error"] == "bad"
    assert rows[a]["times_processed"] == rows[b]["times_processed"] == 1


def test_write_outcomes_is_a_no_op_once_the_claim_is_lost(clean_db: str) -> None:
    add_articles(1)
    old_holder, new_holder = token(), token()
    (article_id,) = _claim_all(old_holder)
    # The lease expired and another worker claimed the article again.
    sql("UPDATE articles SET claimed_at = now() - interval '1 hour' WHERE id = :id", id=article_id)
    again = _retry(held_by=new_holder)
    assert again is not None
    assert again.id == article_id

    assert _write(old_holder, [done(article_id, words=1)]) == {}
    assert _write(new_holder, [done(article_id, words=2)]) == {article_id: "done"}
    # Once done, a late write by any holder changes nothing.
    assert _write(new_holder, [done(article_id, words=3)]) == {}
    row = sql("SELECT word_count, times_processed FROM articles")[0]
    assert row == {"word_count": 2, "times_processed": 1}


def test_write_outcomes_with_nothing_to_write(clean_db: str) -> None:
    assert _write(token(), []) == {}


# --- reap_stale --------------------------------------------------------------------------------


def _reap(*, lease_seconds: float, max_attempts: int) -> queries.Reaped:
    async def go(session: AsyncSession) -> queries.Reaped:
        reaped = await queries.reap_stale(
            session, lease_seconds=lease_seconds, max_attempts=max_attempts
        )
        await session.commit()
        return reaped

    return run_in_session(go)


def test_reap_stale_returns_expired_claims_and_fails_exhausted_ones(clean_db: str) -> None:
    fresh, expired, exhausted, pending = add_articles(4)
    _claim_all(token())
    sql("UPDATE articles SET status = 'pending', claim_token = NULL WHERE id = :id", id=pending)
    sql(
        "UPDATE articles SET claimed_at = now() - interval '10 minutes' WHERE id IN (:a, :b)",
        a=expired,
        b=exhausted,
    )
    sql("UPDATE articles SET attempts = 3 WHERE id = :id", id=exhausted)

    reaped = _reap(lease_seconds=120, max_attempts=3)

    assert (reaped.returned, reaped.failed) == (1, 1)
    rows = {r["id"]: r for r in sql("SELECT id, status, claim_token, error FROM articles")}
    assert rows[fresh]["status"] == "processing"  # lease not expired: left alone
    assert rows[expired]["status"] == "pending"
    assert rows[expired]["claim_token"] is None
    assert rows[exhausted]["status"] == "failed"
    assert "gave up after 3 attempts" in str(rows[exhausted]["error"])
    assert rows[pending]["status"] == "pending"
    assert _reap(lease_seconds=120, max_attempts=3) == queries.Reaped(returned=0, failed=0)


def test_count_by_status_reports_every_status(clean_db: str) -> None:
    add_articles(3)
    _claim_all(token())
    sql("UPDATE articles SET status = 'done' WHERE id = 1")

    async def go(session: AsyncSession) -> dict[str, int]:
        return await queries.count_by_status(session)

    assert run_in_session(go) == {"pending": 0, "processing": 2, "done": 1, "failed": 0}
