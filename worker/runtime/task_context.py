"""`TaskContext`: what an `@async_task` function may know about its own run, and do with it.

Celery keeps a task's request in thread-local state of the worker thread, while the coroutine
runs on the bridge's loop in another thread, so the request is captured before the call crosses
the bridge and handed over here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from celery import Task
from celery.app.task import Context
from sqlalchemy.ext.asyncio import AsyncSession

from worker.runtime.lifespan import Lifespan, Resources

T = TypeVar("T")

log = logging.getLogger(__name__)

PROGRESS = "PROGRESS"


class TaskContext:
    """The running task's request, its progress reports and its process-scoped resources.

    Ask for it with a parameter annotated `TaskContext` (any name, any position after the
    session); it is injected, never part of the payload.
    """

    __slots__ = ("_backend", "_resources", "_sessions", "_task", "request")

    def __init__(
        self,
        task: Task[Any, Any],
        request: Context,
        backend: Any,
        resources: Resources,
        sessions: Callable[[], AbstractAsyncContextManager[AsyncSession]],
    ) -> None:
        # `backend` is the worker thread's: Celery's `app.backend` is per thread, and a
        # redis-py client is thread-safe, so progress reports reuse its connections.
        self._task = task
        self._backend = backend
        self._resources = resources
        self._sessions = sessions
        self.request = request

    @property
    def task_id(self) -> str | None:
        """This run's task id (None when the function is called directly, outside Celery)."""
        task_id: str | None = self.request.id
        return task_id

    @property
    def task_name(self) -> str:
        return str(self._task.name)

    @property
    def retries(self) -> int:
        """How many times this task id was retried before this attempt (0 on the first)."""
        return int(self.request.retries or 0)

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A fresh session of the bridge, for a task that needs several transactions:

            async with ctx.session() as session:
                ...  # commit yourself

        As the injected one: rolled back on error or cancellation, closed on exit. A task
        cancelled at its soft limit loses only the transaction in flight.
        """
        return self._sessions()

    async def resource(self, factory: Lifespan[T]) -> T:
        """What the `@lifespan` `factory` yielded, entered on this loop on first use."""
        return await self._resources.get(factory)

    async def update_state(self, state: str, meta: Mapping[str, Any] | None = None) -> None:
        """Store a custom state (and its JSON `meta`) for this task id in the result backend.

        Does nothing when there is no task id to store it under (a direct or eager call).
        """
        if not self.task_id or self.request.is_eager:
            return
        # A blocking call to the result backend: run off the loop, so concurrent tasks on a
        # shared loop (the threads pool on the `loop` bridge) are not held up by it.
        await asyncio.to_thread(
            self._backend.store_result,
            self.task_id,
            dict(meta or {}),
            state,
            request=self.request,
        )

    async def report_progress(self, **meta: Any) -> bool:
        """Report progress as state `PROGRESS` with `meta` (what `AsyncResult.info` shows).

        Best effort: progress is for watchers, so a result backend that cannot be reached is
        logged and the task goes on. Returns whether the report was stored.
        """
        try:
            await self.update_state(PROGRESS, meta)
        except Exception as exc:
            log.warning("%s[%s]: progress not stored: %r", self.task_name, self.task_id, exc)
            return False
        return True
