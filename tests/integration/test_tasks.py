"""The public tasks through a real (in-process) worker, real Redis and real PostgreSQL.

Tasks are sent by name with JSON kwargs, as any service in any language would send them.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery.result import AsyncResult
from celery.signals import task_retry

from articles_client import contract
from articles_client.errors import ArticlesError, InvalidPayload
from tests.integration.helpers import add_articles, sql
from worker.runtime.app import app

pytestmark = pytest.mark.integration

TIMEOUT = 30
BODY = "Queues move work. Workers take it! Then they report back. Nothing else."


# Ids of the tasks the in-process worker retried. Results keep no retry count (no extended
# results: they would store every payload), so the worker's own signal is the evidence.
RETRIED: set[str] = set()


@task_retry.connect(weak=False)
def _record_retry(request: Any = None, **_: Any) -> None:
    RETRIED.add(request.id)


def retried(result: AsyncResult[Any]) -> bool:
    return result.id in RETRIED


def send(name: str, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
    return app.send_task(name, args=list(args), kwargs=kwargs)


def run(name: str, *args: Any, **kwargs: Any) -> Any:
    return send(name, *args, **kwargs).get(timeout=TIMEOUT)


def fails(name: str, *args: Any, **kwargs: Any) -> tuple[AsyncResult[Any], BaseException]:
    result = send(name, *args, **kwargs)
    # JSON results carry the exception's class and module: the client rebuilds the real error.
    with pytest.raises(ArticlesError) as caught:
        result.get(timeout=TIMEOUT)
    assert result.state == "FAILURE"
    return result, caught.value


def article(article_id: int) -> dict[str, Any]:
    return sql("SELECT * FROM articles WHERE id = :id", id=article_id)[0]


# --- articles.ingest ---------------------------------------------------------------------------


def test_ingest_stores_a_pending_article(live_worker: Any) -> None:
    result = run(
        contract.INGEST,
        title="Hello",
        body=BODY,
        source_url="https://example.com/hello",
        external_id="feed-1",
    )
    assert set(result) == {"article_id", "created"}
    assert result["created"] is True
    row = article(result["article_id"])
    assert (row["title"], row["body"], row["status"]) == ("Hello", BODY, "pending")
    assert (row["source_url"], row["external_id"]) == ("https://example.com/hello", "feed-1")


def test_ingest_duplicate_returns_the_existing_id(live_worker: Any) -> None:
    first = run(contract.INGEST, title="A", body=BODY, external_id="dup")
    again = run(contract.INGEST, title="A changed", body="other", external_id="dup")
    assert again == {"article_id": first["article_id"], "created": False}
    assert article(first["article_id"])["title"] == "A"
    assert sql("SELECT count(*) AS n FROM articles")[0]["n"] == 1


def test_ingest_accepts_positional_arguments(live_worker: Any) -> None:
    result = run(contract.INGEST, "Positional", BODY)
    assert article(result["article_id"])["title"] == "Positional"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": "", "body": BODY}, "title"),
        ({"title": "t", "body": "x" * (contract.MAX_BODY_CHARS + 1)}, "body"),
        ({"title": "t", "body": BODY, "source_url": "ftp://x"}, "source_url"),
        ({"title": "t", "body": "nul\x00byte"}, "body"),
        ({"title": "t", "body": "lone \ud800 surrogate"}, "body"),  # JSON "\ud800" decodes so
        ({"title": "t", "body": BODY, "colour": "red"}, "colour"),
        ({"body": BODY}, "title"),
    ],
)
def test_invalid_ingest_fails_at_once_and_is_not_retried(
    live_worker: Any, kwargs: dict[str, Any], field: str
) -> None:
    result, error = fails(contract.INGEST, **kwargs)
    assert isinstance(error, InvalidPayload)
    assert str(error).startswith(f"articles.ingest: {field}: ")
    assert not retried(result)
    assert sql("SELECT count(*) AS n FROM articles")[0]["n"] == 0
    # The worker is still there for the next task.
    assert run(contract.INGEST, title="after", body=BODY)["created"] is True


def test_wrong_type_is_refused_not_coerced(live_worker: Any) -> None:
    _, error = fails(contract.PROCESS_ARTICLE, article_id="1")
    assert "article_id: Input should be a valid integer" in str(error)


# --- articles.process_article ------------------------------------------------------------------


def test_process_article_marks_it_done(live_worker: Any) -> None:
    article_id = run(contract.INGEST, title="t", body=BODY)["article_id"]
    result = run(contract.PROCESS_ARTICLE, article_id=article_id)
    assert result == {"article_id": article_id, "status": "done", "word_count": 12}
    row = article(article_id)
    assert row["reading_time_seconds"] == 4
    assert row["summary"] == "Queues move work. Workers take it!"
    assert row["keywords"] == ["back", "else", "move", "nothing", "queues"]
    assert (row["attempts"], row["times_processed"], row["error"]) == (1, 1, None)
    assert row["processed_at"] is not None


def test_process_article_again_changes_nothing(live_worker: Any) -> None:
    article_id = run(contract.INGEST, title="t", body=BODY)["article_id"]
    first = run(contract.PROCESS_ARTICLE, article_id=article_id)
    again = run(contract.PROCESS_ARTICLE, article_id)  # positional works too
    assert again == first
    row = article(article_id)
    assert (row["attempts"], row["times_processed"]) == (1, 1)


def test_process_article_with_an_empty_body_marks_it_failed(live_worker: Any) -> None:
    # Another service may write rows with plain SQL; the task must cope with what it finds.
    (article_id,) = add_articles(1, body="   ")
    result = run(contract.PROCESS_ARTICLE, article_id=article_id)
    assert result == {"article_id": article_id, "status": "failed", "word_count": None}
    assert article(article_id)["error"] == "body is empty"


def test_process_a_missing_article_fails_clearly_without_retry(live_worker: Any) -> None:
    result, error = fails(contract.PROCESS_ARTICLE, article_id=424242)
    assert isinstance(error, InvalidPayload)  # ArticleNotFound: bad input, not retried
    assert str(error) == "article 424242 does not exist"
    assert not retried(result)


# --- articles.run_pipeline ---------------------------------------------------------------------


def test_run_pipeline_with_limit_and_batch_size(live_worker: Any) -> None:
    ids = [run(contract.INGEST, title=f"t{i}", body=BODY)["article_id"] for i in range(7)]

    first = run(contract.RUN_PIPELINE, batch_size=2, limit=5)
    assert set(first) == {"run_id", "claimed", "succeeded", "failed", "complete"}
    assert {k: first[k] for k in ("claimed", "succeeded", "failed")} == {
        "claimed": 5,
        "succeeded": 5,
        "failed": 0,
    }
    statuses = {r["id"]: r["status"] for r in sql("SELECT id, status FROM articles")}
    assert [statuses[i] for i in ids] == ["done"] * 5 + ["pending"] * 2  # oldest first

    rest = run(contract.RUN_PIPELINE)
    assert (rest["claimed"], rest["succeeded"]) == (2, 2)
    assert rest["run_id"] != first["run_id"]
    assert run(contract.RUN_PIPELINE)["claimed"] == 0

    runs = {r["id"]: r for r in sql("SELECT * FROM pipeline_runs")}
    recorded = runs[first["run_id"]]
    assert (recorded["batch_size"], recorded["limit"], recorded["status"]) == (2, 5, "succeeded")
    assert (recorded["claimed"], recorded["succeeded"], recorded["failed"]) == (5, 5, 0)
    assert recorded["task_id"] is not None
    assert recorded["finished_at"] is not None
    assert runs[rest["run_id"]]["batch_size"] == 100  # the default


def test_run_pipeline_counts_failed_articles(live_worker: Any) -> None:
    add_articles(3)
    add_articles(2, body="\n")
    result = run(contract.RUN_PIPELINE, batch_size=4)
    assert {k: result[k] for k in ("claimed", "succeeded", "failed")} == {
        "claimed": 5,
        "succeeded": 3,
        "failed": 2,
    }
    rows = sql("SELECT status, error, attempts FROM articles WHERE status = 'failed'")
    assert rows == [{"status": "failed", "error": "body is empty", "attempts": 1}] * 2


def test_run_pipeline_refuses_a_bad_batch_size(live_worker: Any) -> None:
    result, error = fails(contract.RUN_PIPELINE, batch_size=0)
    assert str(error).startswith("articles.run_pipeline: batch_size: ")
    assert not retried(result)
    assert sql("SELECT count(*) AS n FROM pipeline_runs")[0]["n"] == 0


def test_reap_stale_task_reports_its_counts(live_worker: Any) -> None:
    (article_id,) = add_articles(1)
    sql(
        "UPDATE articles SET status = 'processing', claimed_at = now() - interval '1 hour' "
        "WHERE id = :id",
        id=article_id,
    )
    assert run(contract.REAP_STALE) == {"returned": 1, "failed": 0, "abandoned_runs": 0}
    assert article(article_id)["status"] == "pending"
