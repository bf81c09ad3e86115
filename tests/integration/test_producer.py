"""The producer: thin (no database code), validating, bounded when the broker is down, and
non-blocking in its async form. Probes that need a different broker run in a fresh interpreter."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import pytest

from articles_client.errors import InvalidPayload
from tests.integration.helpers import sql
from tests.support.env import service_env
from tests.support.processes import ROOT
from worker import producer
from worker.runtime.app import app

pytestmark = pytest.mark.integration

BODY = "One two three. Four five six seven."
# Nothing listens here: connections are refused at once, as with a Redis that is down.
DEAD_REDIS = "redis://:s3cret-pw@127.0.0.1:6390/0"


def probe(code: str, timeout: float = 60, **env: str) -> dict[str, Any]:
    """Run `code` in a fresh interpreter with this run's environment; it prints one JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=service_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


LEAKS = """
    def leaks():
        heavy = {"sqlalchemy", "asyncpg", "aiosqlite", "tasks", "db", "alembic"}
        return sorted(m for m in sys.modules if m.split(".")[0] in heavy)
"""


def test_importing_and_publishing_loads_no_database_or_task_code(live_worker: Any) -> None:
    task_id = str(uuid.uuid4())
    report = probe(
        LEAKS
        + f"""
    import json, sys
    from worker.producer import enqueue_ingest
    after_import = leaks()
    enqueue_ingest(title="from another service", body="a b c", task_id="{task_id}")
    print(json.dumps({{"after_import": after_import, "after_publish": leaks()}}))
    """
    )
    assert report == {"after_import": [], "after_publish": []}
    # The message it published is a real job: the worker stored the article.
    assert app.AsyncResult(task_id).get(timeout=30)["created"] is True
    assert sql("SELECT title FROM articles") == [{"title": "from another service"}]


def test_enqueue_functions_round_trip(live_worker: Any) -> None:
    ingested = producer.enqueue_ingest(title="t", body=BODY, external_id="p-1").get(timeout=30)
    assert ingested["created"] is True
    again = producer.enqueue_ingest(title="t", body=BODY, external_id="p-1").get(timeout=30)
    assert again == {"article_id": ingested["article_id"], "created": False}

    processed = producer.enqueue_process_article(article_id=ingested["article_id"])
    assert processed.get(timeout=30) == {
        "article_id": ingested["article_id"],
        "status": "done",
        "word_count": 7,
    }

    producer.enqueue_ingest(title="second", body=BODY).get(timeout=30)
    task_id = f"run-{uuid.uuid4()}"
    run = producer.enqueue_pipeline_run(batch_size=1, limit=5, task_id=task_id)
    assert run.id == task_id
    outcome = run.get(timeout=30)
    assert (outcome["claimed"], outcome["succeeded"], outcome["failed"]) == (1, 1, 0)
    assert sql('SELECT task_id, batch_size, "limit" FROM pipeline_runs') == [
        {"task_id": task_id, "batch_size": 1, "limit": 5}
    ]


def test_async_twins_round_trip(live_worker: Any) -> None:
    async def main() -> list[str]:
        results = await asyncio.gather(
            producer.enqueue_ingest_async(title="a", body=BODY),
            producer.enqueue_ingest_async(title="b", body=BODY),
        )
        return [r.id for r in results]

    ids = asyncio.run(main())
    assert [app.AsyncResult(i).get(timeout=30)["created"] for i in ids] == [True, True]
    run = asyncio.run(producer.enqueue_pipeline_run_async(batch_size=10))
    assert run.get(timeout=30)["succeeded"] == 2
    article_id = int(sql("SELECT min(id) AS id FROM articles")[0]["id"])
    processed = asyncio.run(producer.enqueue_process_article_async(article_id=article_id))
    assert processed.get(timeout=30)["status"] == "done"


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: producer.enqueue_ingest(title="", body=BODY), "title"),
        (lambda: producer.enqueue_ingest(title="t", body="x\x00"), "body"),
        (lambda: producer.enqueue_ingest(title="t", body=BODY, source_url="nope"), "source_url"),
        (lambda: producer.enqueue_process_article(article_id=0), "article_id"),
        (lambda: producer.enqueue_process_article(article_id="7"), "article_id"),  # type: ignore[arg-type]
        (lambda: producer.enqueue_pipeline_run(batch_size=0), "batch_size"),
        (lambda: producer.enqueue_pipeline_run(limit=0), "limit"),
    ],
)
def test_invalid_payload_is_refused_before_sending(call: Any, fragment: str) -> None:
    with pytest.raises(InvalidPayload, match=fragment):
        call()


def test_validation_happens_before_any_broker_contact() -> None:
    """With a dead broker, a bad payload still fails at once with InvalidPayload."""
    report = probe(
        """
        import json, time
        from worker.errors import InvalidPayload
        from worker.producer import enqueue_ingest
        started = time.monotonic()
        try:
            enqueue_ingest(title="", body="b")
        except InvalidPayload as exc:
            print(json.dumps({"error": str(exc), "seconds": time.monotonic() - started}))
        """,
        CELERY_BROKER_URL=DEAD_REDIS,
        CELERY_RESULT_BACKEND=DEAD_REDIS,
    )
    assert report["error"].startswith("articles.ingest: title: ")
    assert report["seconds"] < 0.5


UNREACHABLE = """
    import asyncio, json, time
    from worker.errors import BrokerUnavailable
    from worker.producer import enqueue_ingest, enqueue_ingest_async

    def timed(fn):
        started = time.monotonic()
        try:
            fn()
        except BrokerUnavailable as exc:
            return {"error": str(exc), "seconds": time.monotonic() - started}
        return {"error": None, "seconds": time.monotonic() - started}

    async def with_ticker():
        ticks = 0
        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        try:
            await enqueue_ingest_async(title="t", body="b")
            error = None
        except BrokerUnavailable as exc:
            error = str(exc)
        seconds = time.monotonic() - started
        ticker.cancel()
        return {"error": error, "seconds": seconds, "ticks": ticks}

    sync = timed(lambda: enqueue_ingest(title="t", body="b"))
    print(json.dumps({"sync": sync, "async": asyncio.run(with_ticker())}))
"""


@pytest.mark.parametrize(
    "down",
    [
        {"CELERY_BROKER_URL": DEAD_REDIS},
        {"CELERY_BROKER_URL": DEAD_REDIS, "CELERY_RESULT_BACKEND": DEAD_REDIS},
    ],
    ids=["broker-down", "broker-and-backend-down"],
)
def test_unreachable_broker_raises_promptly_with_the_password_masked(
    down: dict[str, str],
) -> None:
    started = time.monotonic()
    report = probe(UNREACHABLE, timeout=90, **down)
    for mode in ("sync", "async"):
        error = report[mode]["error"]
        assert error is not None, f"{mode}: published to a dead broker?"
        assert "s3cret-pw" not in error
        assert ":***@127.0.0.1:6390" in error
        assert report[mode]["seconds"] < 10, report
    # The async twin left the event loop free: the ticker ran through the whole wait.
    expected_ticks = report["async"]["seconds"] / 0.01
    assert report["async"]["ticks"] > 0.5 * expected_ticks, report
    assert time.monotonic() - started < 60
