"""run_pipeline reports PROGRESS through the result backend while it runs, and the CLI's
progress follower draws it and returns the outcome."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from rich.console import Console

from articles_client import contract
from tests.integration.helpers import add_articles
from worker.cli.progress import wait_for_run
from worker.runtime.app import app

pytestmark = pytest.mark.integration

ARTICLES = 300
META_KEYS = {"run_id", "claimed", "done", "succeeded", "failed", "total"}


def test_progress_states_are_observed_while_a_run_is_going(live_worker: Any) -> None:
    add_articles(ARTICLES)
    result = app.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 5})
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        meta = app.backend.get_task_meta(result.id)
        if meta["status"] == "PROGRESS":
            seen.append(meta["result"])
        if meta["status"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.005)
    final = result.get(timeout=10)

    assert final["claimed"] == ARTICLES
    assert len({m["done"] for m in seen}) >= 2, seen
    assert all(set(m) == META_KEYS for m in seen)
    assert all(m["run_id"] == final["run_id"] and m["total"] == ARTICLES for m in seen)
    done = [m["done"] for m in seen]
    assert done == sorted(done)
    assert done[0] > 0
    assert done[-1] <= ARTICLES


def test_wait_for_run_draws_the_bar_and_returns_the_outcome(live_worker: Any) -> None:
    add_articles(40)
    screen = io.StringIO()
    console = Console(file=screen, width=100, force_terminal=False)
    result = app.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 4})

    outcome = wait_for_run(result, timeout=60, console=console)

    assert (outcome["claimed"], outcome["succeeded"], outcome["failed"]) == (40, 40, 0)
    assert "40/40" in screen.getvalue()
