"""A first end-to-end path through the in-process worker: ingest, pipeline, results."""

from __future__ import annotations

from typing import Any

import pytest

from articles_client import contract
from tests.support.database import fetch
from worker.runtime.app import app

pytestmark = pytest.mark.integration


def test_ingest_then_pipeline_marks_articles_done(live_worker: Any, database_url: str) -> None:
    for i in range(5):
        result = app.send_task(
            contract.INGEST, kwargs={"title": f"t{i}", "body": "one two three. four five."}
        )
        assert result.get(timeout=20)["created"] is True
    outcome = app.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 2}).get(timeout=30)
    assert outcome["claimed"] == 5
    assert outcome["succeeded"] == 5
    rows = __import__("asyncio").run(fetch(database_url, "SELECT status, word_count FROM articles"))
    assert {(r["status"], r["word_count"]) for r in rows} == {("done", 5)}
