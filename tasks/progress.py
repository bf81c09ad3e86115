"""A pipeline run's progress in the result backend: a convenience, never a reason to fail.

The run's truth is its database row. If the result backend cannot take a progress write (Redis
down longer than the store's own retries, about 3 s), the failure is logged and the run goes on;
further writes are skipped for `PAUSE_SECONDS` so an outage does not cost every batch those
retries.
"""

from __future__ import annotations

import logging
import time

from tasks.jobs import BatchResult
from worker.runtime.task_context import PROGRESS, TaskContext

log = logging.getLogger(__name__)

PAUSE_SECONDS = 10.0


class Progress:
    """Reports a run's `PROGRESS` state (`claimed`/`done`/`total`) on a best-effort basis."""

    def __init__(self, ctx: TaskContext, run_id: int) -> None:
        self._ctx = ctx
        self._run_id = run_id
        self._paused_until = 0.0
        self.failures = 0

    async def report(self, totals: BatchResult, total: int) -> None:
        if time.monotonic() < self._paused_until:
            return
        try:
            # Skipped by the context when there is no task id (a direct or eager call).
            await self._ctx.update_state(PROGRESS, self._meta(totals, total))
        except Exception as exc:
            self.failures += 1
            self._paused_until = time.monotonic() + PAUSE_SECONDS
            log.warning(
                "run %s: progress not recorded (%s: %s); the run goes on, next try in %.0fs",
                self._run_id,
                type(exc).__name__,
                exc,
                PAUSE_SECONDS,
            )

    def _meta(self, totals: BatchResult, total: int) -> dict[str, int]:
        return {
            "run_id": self._run_id,
            "claimed": totals.claimed,
            "done": totals.succeeded + totals.failed,
            "succeeded": totals.succeeded,
            "failed": totals.failed,
            "total": total,
        }
