"""Claims that nothing else has to rescue: an expired lease is taken back by the claim itself
(no reaper tick needed), and an article that kills its worker process costs only itself.
"""

from __future__ import annotations

import time

import pytest

from articles_client import contract
from db.queries import gave_up_message
from tests.reliability.conftest import BODY, Stack
from tests.support.poison import MARKER

pytestmark = pytest.mark.reliability

LEASE = 9.0  # FAST_RECOVERY's CLAIM_LEASE_SECONDS
INTERVAL = 1.0


def test_stale_claim_comes_back_while_two_long_runs_hold_both_processes(stack: Stack) -> None:
    stack.add_articles(100_000)
    env = stack.env(
        REAPER_INTERVAL_SECONDS="3600",  # no reaper at all: the claim alone must take it back
        PIPELINE_INTERVAL_SECONDS=str(INTERVAL),
        PIPELINE_BATCH_SIZE="20",
    )
    with stack.beat(env), stack.worker(env, concurrency=2) as worker:
        stack.wait_for(lambda: _running(stack) == 2, 30, "two runs at once")
        # Held by a worker that died just now.
        (stale,) = stack.sql(
            "INSERT INTO articles (title, body, status, attempts, claim_token, claimed_at) "
            "VALUES ('stale', $1, 'processing', 1, 'dead', now()) RETURNING id",
            BODY,
        )
        claimed_at = time.monotonic()
        busy = set()
        while _status(stack, stale["id"]) != "done":
            assert time.monotonic() - claimed_at < 3 * LEASE, "the stale claim never came back"
            busy.add(_running(stack))
            time.sleep(0.1)
        returned_after = time.monotonic() - claimed_at
        left = stack.counts().get("pending", 0)
        log = worker.log()
    print(
        f"\nstale claim (lease {LEASE:g} s) done {returned_after:.1f}s after it was taken, "
        f"{left} articles still pending; runs running at once meanwhile: {sorted(busy)}"
    )
    assert returned_after <= LEASE + INTERVAL + 1  # 1 s: the database's timestamp vs ours
    assert left > 0, "the backlog ran out: the runs were not long"
    assert 2 in busy
    assert "articles.reap_stale[" not in log, "a reaper ran"
    (row,) = stack.sql("SELECT attempts, times_processed FROM articles WHERE id = $1", stale["id"])
    assert dict(row) == {"attempts": 2, "times_processed": 1}


def _running(stack: Stack) -> int:
    rows = stack.sql("SELECT count(*) AS n FROM pipeline_runs WHERE status = 'running'")
    return int(rows[0]["n"])


def _status(stack: Stack, article_id: int) -> str:
    return str(stack.sql("SELECT status FROM articles WHERE id = $1", article_id)[0]["status"])


# Short limits so each lease expires in seconds: lease 4 s > hard limit 3 s.
POISON_ENV = {
    "EXTRA_TASK_MODULES": "tests.support.tasks,tests.support.poison",
    "TASK_SOFT_TIME_LIMIT": "2",
    "TASK_TIME_LIMIT": "3",
    "CLAIM_LEASE_SECONDS": "4",
    "MAX_ATTEMPTS": "3",
}


def _add_batch_with_poison(stack: Stack) -> dict[str, int]:
    titles = ["first", "second", "poison", "fourth", "fifth"]
    for title in titles:
        body = f"{BODY} {MARKER}" if title == "poison" else BODY
        stack.sql("INSERT INTO articles (title, body) VALUES ($1, $2)", title, body)
    return {r["title"]: r["id"] for r in stack.sql("SELECT id, title FROM articles")}


def test_poison_article_in_a_batch_fails_alone_and_its_neighbours_end_done(stack: Stack) -> None:
    ids = _add_batch_with_poison(stack)
    env = stack.env(**POISON_ENV, PIPELINE_INTERVAL_SECONDS="1")
    with stack.beat(env), stack.worker(env, concurrency=1) as worker:
        started = time.monotonic()
        settled = stack.wait_for(
            lambda: stack.counts() == {"done": 4, "failed": 1},
            90,
            "four done and the poison failed",
            detail=lambda: str(stack.sql("SELECT id, status, attempts FROM articles")),
        )
        deaths = worker.log().count("WorkerLostError")
    print(
        f"\npoison isolated in {settled:.1f}s ({time.monotonic() - started:.1f}s), "
        f"{deaths} worker-lost reports"
    )
    rows = {
        r["id"]: dict(r)
        for r in stack.sql("SELECT id, status, attempts, error, times_processed FROM articles")
    }
    poison = rows.pop(ids["poison"])
    assert (poison["status"], poison["error"]) == ("failed", gave_up_message(3))
    assert poison["attempts"] == 3
    assert deaths >= 3  # the process died on each of its three attempts
    for row in rows.values():
        assert (row["status"], row["times_processed"]) == ("done", 1), row
        assert row["attempts"] <= 2, row  # the crashed batch, then once alone


def test_poison_process_article_stops_after_max_attempts(stack: Stack) -> None:
    ids = _add_batch_with_poison(stack)
    env = stack.env(**POISON_ENV)
    crashes: list[str] = []
    with stack.client() as app, stack.worker(env, concurrency=1):
        # Celery reports a crash as WorkerLostError (then redelivers at once) or, when the child
        # dies before the pool saw it take the job, as TimeLimitExceeded once the hard limit
        # passes (then the message is acked). Either way the attempt was committed before the
        # work, so the deliveries stop counting at MAX_ATTEMPTS.
        for _ in range(6):
            result = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": ids["poison"]})
            try:
                outcome = result.get(timeout=60)
            except Exception as exc:
                crashes.append(type(exc).__name__)
                continue
            break
        neighbour = app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": ids["fifth"]})
        assert neighbour.get(timeout=30)["status"] == "done"
    print(f"\ncrashes reported to the sender: {crashes}")
    assert outcome["status"] == "failed"
    (row,) = stack.sql("SELECT attempts, error FROM articles WHERE id = $1", ids["poison"])
    assert dict(row) == {"attempts": 3, "error": gave_up_message(3)}
    assert len(crashes) <= 3
