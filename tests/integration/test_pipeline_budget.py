"""run_pipeline's time budget: a run stops claiming when it is spent, closes its row `partial`,
strands nothing, and the next run takes the rest."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from articles_client import contract
from tasks import analysis
from tests.integration.helpers import add_articles, sql
from worker.runtime.app import app
from worker.runtime.settings import get_settings

pytestmark = pytest.mark.integration

BACKLOG = 3000


def run(**kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = app.send_task(contract.RUN_PIPELINE, kwargs=kwargs).get(timeout=60)
    return result


def test_a_budget_shorter_than_the_backlog_ends_cleanly_and_the_next_run_finishes(
    live_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_articles(BACKLOG)
    # The in-process worker reads the same settings object when the task runs.
    settings = get_settings()
    monkeypatch.setattr(settings, "pipeline_time_budget_seconds", 1.0)

    first = run(batch_size=10)

    assert first["complete"] is False
    assert 0 < first["claimed"] < BACKLOG
    assert first["claimed"] == first["succeeded"]
    (row,) = sql(
        "SELECT status, claimed, finished_at FROM pipeline_runs WHERE id = :id", id=first["run_id"]
    )
    assert (row["status"], row["claimed"]) == ("partial", first["claimed"])
    assert row["finished_at"] is not None
    # Nothing stranded: whatever was claimed was written before the run stopped.
    counts = {
        r["status"]: r["n"] for r in sql("SELECT status, count(*) AS n FROM articles GROUP BY 1")
    }
    assert counts == {"done": first["claimed"], "pending": BACKLOG - first["claimed"]}

    monkeypatch.setattr(settings, "pipeline_time_budget_seconds", 60)
    rest = run(batch_size=500)

    print(f"\nbudget 1 s: first run {first['claimed']} articles, the next {rest['claimed']}")
    assert rest["complete"] is True
    assert first["claimed"] + rest["claimed"] == BACKLOG
    assert sql("SELECT status FROM pipeline_runs WHERE id = :id", id=rest["run_id"]) == [
        {"status": "succeeded"}
    ]
    assert sql(
        "SELECT status, times_processed AS t, count(*) AS n FROM articles GROUP BY 1, 2"
    ) == [{"status": "done", "t": 1, "n": BACKLOG}]


def test_a_soft_limit_mid_run_loses_at_most_the_batch_in_flight_and_closes_the_run(
    live_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The in-process worker runs solo in a thread, where Celery enforces no time limit: the
    # bridge's own deadline cancels the coroutine. The second batch's first article takes
    # longer than the limit, so the cancellation lands inside that batch, after its claim.
    batch_size, limit = 10, 5.0
    calls = itertools.count(1)
    analyse = analysis.analyse

    def slow_from_the_second_batch(body: str) -> Any:
        if next(calls) == batch_size + 1:
            time.sleep(limit + 1)
        return analyse(body)

    monkeypatch.setattr(analysis, "analyse", slow_from_the_second_batch)
    add_articles(BACKLOG)
    result = app.send_task(
        contract.RUN_PIPELINE, kwargs={"batch_size": batch_size}, soft_time_limit=limit
    )

    with pytest.raises(SoftTimeLimitExceeded):
        result.get(timeout=60)

    (row,) = sql("SELECT status, error, claimed, finished_at FROM pipeline_runs")
    counts = {
        r["status"]: r["n"] for r in sql("SELECT status, count(*) AS n FROM articles GROUP BY 1")
    }
    assert row["status"] == "failed"
    assert row["error"].startswith("SoftTimeLimitExceeded")
    assert row["finished_at"] is not None
    # The first batch committed and is counted; the second's write was rolled back, leaving
    # only its claim for the lease to return; nothing else was touched.
    assert counts == {"done": batch_size, "processing": batch_size, "pending": BACKLOG - 20}
    assert row["claimed"] == batch_size
    assert sql("SELECT max(times_processed) AS m FROM articles") == [{"m": 1}]
