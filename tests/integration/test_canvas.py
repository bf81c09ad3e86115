"""Canvas by task name from the client: a chain of ingest into process_article, a group of
process_article, a chord of ingests whose callback is run_pipeline. The client runs in a fresh
interpreter (it imports no task code, so signatures are made by name on its app); the jobs run
on the real in-process worker."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.helpers import sql
from tests.integration.test_producer import probe

pytestmark = pytest.mark.integration

BODY = "One two three. Four five six seven."

CHAIN = f"""
    import json
    from celery import chain
    from articles_client.producer import client_app
    app = client_app()
    flow = chain(
        app.signature("articles.ingest", kwargs={{"title": "chained", "body": "{BODY}"}}),
        app.signature("articles.process_article"),
    )
    result = flow.apply_async()
    print(json.dumps({{"last": result.get(timeout=60), "first": result.parent.get(timeout=60)}}))
"""


def test_chain_ingest_then_process_article_takes_the_article_id(live_worker: Any) -> None:
    report = probe(CHAIN)
    article_id = report["first"]["article_id"]
    assert report["first"] == {"article_id": article_id, "created": True}
    assert report["last"] == {"article_id": article_id, "status": "done", "word_count": 7}
    assert sql("SELECT title, status FROM articles") == [{"title": "chained", "status": "done"}]


def test_a_group_of_process_article_runs(live_worker: Any) -> None:
    ids = [
        probe(
            f"""
            import json
            from articles_client.producer import enqueue_ingest
            print(json.dumps(enqueue_ingest(title="g{n}", body="{BODY}").get(timeout=60)))
            """
        )["article_id"]
        for n in range(3)
    ]
    report = probe(
        f"""
        import json
        from celery import group
        from articles_client.producer import client_app
        app = client_app()
        flow = group(
            app.signature("articles.process_article", kwargs={{"article_id": i}}) for i in {ids}
        )
        print(json.dumps({{"results": flow.apply_async().get(timeout=60)}}))
        """
    )
    assert [r["status"] for r in report["results"]] == ["done"] * 3
    assert sorted(r["article_id"] for r in report["results"]) == sorted(ids)


CHORD = f"""
    import json
    from celery import chord
    from articles_client.producer import client_app
    app = client_app()
    header = [
        app.signature("articles.ingest", kwargs={{"title": f"c{{n}}", "body": "{BODY}"}})
        for n in range(4)
    ]
    callback = app.signature("articles.run_pipeline", kwargs={{"batch_size": 2}})
    print(json.dumps({{"run": chord(header)(callback).get(timeout=60)}}))
"""


def test_a_chord_of_ingests_calls_run_pipeline(live_worker: Any) -> None:
    run = probe(CHORD)["run"]
    assert (run["claimed"], run["succeeded"], run["failed"]) == (4, 4, 0)
    assert sql("SELECT count(*) AS n FROM articles WHERE status = 'done'") == [{"n": 4}]


def test_a_chain_into_a_task_that_takes_no_predecessor_fails_clearly(live_worker: Any) -> None:
    report = probe(
        f"""
        import json
        from celery import chain
        from articles_client.producer import client_app
        app = client_app()
        flow = chain(
            app.signature("articles.ingest", kwargs={{"title": "t", "body": "{BODY}"}}),
            app.signature("articles.ingest", kwargs={{"body": "{BODY}"}}),
        )
        try:
            flow.apply_async().get(timeout=60)
        except Exception as exc:
            print(json.dumps({{"error": f"{{type(exc).__name__}}: {{exc}}"}}))
        """
    )
    # The dict lands in the first field (title): strict, never coerced, named.
    assert report["error"].startswith("InvalidPayload: articles.ingest: title: ")
