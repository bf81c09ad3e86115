"""Process-scoped async resources for `@async_task` functions: `@lifespan` context managers.

A lifespan is an async context manager factory registered once, at import of a task module:

    @lifespan
    @asynccontextmanager
    async def http_client() -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient() as client:
            yield client

A task reaches what it yields through its context, `await ctx.resource(http_client)`, never
through a global. It is entered lazily, on the bridge's event loop, the first time a task asks
for it, so always after fork and in the process that uses it (the threads pool sends no process
signal, so an eager start could not be placed there). What that means per bridge:

- `loop`: the process's one loop lives as long as the process, so a lifespan is entered once per
  process and shared by every task it runs (and by the concurrent tasks of a threads pool); it is
  exited when the worker shuts the bridge down (`worker_process_shutdown`, `worker_shutdown`).
- `nullpool`: every call has a brand-new loop that is closed afterwards, and nothing bound to a
  loop (a connection pool, an HTTP client) may outlive it. So a lifespan is entered per task call,
  on that call's loop, and exited when the call ends: correct, but with none of the reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, TypeVar

T = TypeVar("T")
Lifespan = Callable[[], AbstractAsyncContextManager[T]]
F = TypeVar("F", bound=Callable[[], AbstractAsyncContextManager[Any]])

_registered: set[Callable[[], AbstractAsyncContextManager[Any]]] = set()


def lifespan(factory: F) -> F:
    """Register `factory` (an async context manager factory) as a process-scoped resource."""
    _registered.add(factory)
    return factory


class Resources:
    """The lifespans entered on one event loop, and what each yielded."""

    def __init__(self) -> None:
        self._values: dict[Callable[[], AbstractAsyncContextManager[Any]], Any] = {}
        self._stack = AsyncExitStack()
        # Created on first use, so it belongs to the loop this object serves.
        self._lock: asyncio.Lock | None = None

    async def get(self, factory: Lifespan[T]) -> T:
        """What `factory` yielded, entering it on this loop on first use."""
        try:
            return self._values[factory]  # type: ignore[no-any-return]
        except KeyError:
            pass
        if factory not in _registered:
            name = getattr(factory, "__qualname__", repr(factory))
            raise LookupError(f"{name} is not a lifespan: decorate it with @lifespan")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # two tasks asking at once enter it once
            if factory not in self._values:
                self._values[factory] = await self._stack.enter_async_context(factory())
        return self._values[factory]  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Exit the entered lifespans, last entered first."""
        self._values.clear()
        await self._stack.aclose()


@contextlib.asynccontextmanager
async def per_call() -> AsyncIterator[Resources]:
    """Resources that live for one call only (the `nullpool` bridge's loops live no longer)."""
    resources = Resources()
    try:
        yield resources
    finally:
        await resources.aclose()
