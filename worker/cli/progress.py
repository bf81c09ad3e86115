"""Follow a pipeline run through its Celery task state and draw a live progress bar.

`articles.run_pipeline` stores state `PROGRESS` with `{run_id, claimed, done, succeeded, failed,
total}` after every batch; the result backend (Redis, or the embedded database backend) holds it
until the final `SUCCESS` or `FAILURE` replaces it.
"""

from __future__ import annotations

import time
from typing import Any

from celery.result import AsyncResult
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from articles_client.errors import ArticlesError

POLL_SECONDS = 0.2
# Say once that nothing has picked the task up, in case no worker is running.
NO_WORKER_HINT_AFTER = 10.0


class RunFailed(ArticlesError):
    """The pipeline task ended in failure."""


class WaitTimedOut(ArticlesError):
    """The pipeline task did not finish within the time allowed."""


def wait_for_run(result: AsyncResult[Any], *, timeout: float, console: Console) -> dict[str, Any]:
    """Poll `result` until it finishes, drawing a progress bar; return the task's return value."""
    columns = (
        TextColumn("[bold]pipeline[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    hinted = False
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("waiting for a worker", total=None)
        while True:
            # One read of state and result together: two reads could straddle the last update.
            meta = result.backend.get_task_meta(result.id)
            state, info = meta["status"], meta.get("result")
            if state == "PROGRESS" and isinstance(info, dict):
                bar.update(
                    task,
                    description=f"run {info.get('run_id')}",
                    total=max(int(info.get("total", 0)), 1),
                    completed=int(info.get("done", 0)),
                )
            elif state == "SUCCESS":
                return _finish(bar, task, info)
            elif state in ("FAILURE", "REVOKED"):
                raise RunFailed(f"pipeline task {result.id} ended {state}: {_describe(info)}")
            elapsed = time.monotonic() - started
            if state == "PENDING" and elapsed > NO_WORKER_HINT_AFTER and not hinted:
                hinted = True
                console.print("still queued: is a worker running? (celery -A worker worker)")
            if elapsed > timeout:
                raise WaitTimedOut(
                    f"pipeline task {result.id} still {state} after {timeout:.0f}s; "
                    "it keeps running: follow it with `articles status`"
                )
            time.sleep(POLL_SECONDS)


def _finish(bar: Progress, task: Any, info: Any) -> dict[str, Any]:
    outcome = dict(info) if isinstance(info, dict) else {"result": info}
    claimed = int(outcome.get("claimed", 0))
    bar.update(
        task,
        description=f"run {outcome.get('run_id')}",
        total=max(claimed, 1),
        completed=claimed if claimed else 1,
    )
    return outcome


def _describe(info: Any) -> str:
    if isinstance(info, BaseException):
        return f"{type(info).__name__}: {info}"
    return repr(info)
