"""Duplicate delivery: the same message (same task id, same body) delivered twice, concurrently,
to two prefork children, has exactly one effect. This is what at-least-once delivery produces
after a crash between commit and ack, or a visibility-timeout redelivery.
"""

from __future__ import annotations

import pytest

from articles_client import contract
from tests.reliability.conftest import Stack

pytestmark = pytest.mark.reliability


def _twice(app: object, name: str, kwargs: dict[str, object], task_id: str) -> None:
    for _ in range(2):
        app.send_task(name, kwargs=kwargs, task_id=task_id)  # type: ignore[attr-defined]


def test_process_article_delivered_twice_concurrently_has_one_effect(stack: Stack) -> None:
    count = 40
    stack.add_articles(count)
    with stack.client() as app, stack.worker(concurrency=2) as worker:
        for i in range(1, count + 1):
            _twice(app, contract.PROCESS_ARTICLE, {"article_id": i}, f"dup-process-{i}")
        stack.wait_for(stack.all_done(count), 60, "every article done")
        stack.wait_for(
            lambda: worker.log().count("succeeded in") >= 2 * count, 30, "both copies to finish"
        )
        log = worker.log()
    assert all(log.count(f"[dup-process-{i}] received") == 2 for i in range(1, count + 1))
    rows = stack.sql("SELECT attempts, times_processed FROM articles")
    assert {r["times_processed"] for r in rows} == {1}
    # The attempt is committed before the work, so that a crash cannot undo it: a copy that
    # counts its attempt before the other copy has claimed the row counts one too.
    assert {r["attempts"] for r in rows} <= {1, 2}


@pytest.mark.parametrize("with_external_id", [True, False])
def test_ingest_delivered_twice_concurrently_stores_one_article(
    stack: Stack, with_external_id: bool
) -> None:
    count = 20
    with stack.client() as app, stack.worker(concurrency=2) as worker:
        for i in range(count):
            kwargs: dict[str, object] = {"title": f"dup {i}", "body": "Twice sent, once stored."}
            if with_external_id:
                kwargs["external_id"] = f"ext-{i}"
            _twice(app, contract.INGEST, kwargs, f"dup-ingest-{i}")
        stack.wait_for(
            lambda: worker.log().count("succeeded in") >= 2 * count, 60, "both copies to finish"
        )
    rows = stack.sql("SELECT title, count(*) AS n FROM articles GROUP BY title")
    assert len(rows) == count
    assert {r["n"] for r in rows} == {1}
