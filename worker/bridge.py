"""The one place where sync code (Celery tasks) enters async code (SQLAlchemy on asyncpg).

Two implementations of one contract, chosen by `ASYNC_BRIDGE`:

- `nullpool` (the designed default): `asgiref.async_to_sync` runs each call on a brand-new event
  loop in a new thread, with a `NullPool` engine, so no connection ever outlives the loop that
  opened it. Simple and obviously correct; it pays a thread, a loop and a database login per call.
- `loop`: each process owns one event loop in a dedicated thread and a pooled engine bound to it.
  Calls are handed to that loop; connections are reused. Much faster; slightly more machinery.

Both give the same guarantee when the waiting thread is interrupted (Celery's
`SoftTimeLimitExceeded` is raised by a signal handler in the task's thread, while the coroutine
runs in another): the coroutine is cancelled, its session rolls back, and the bridge waits (bounded)
for that before re-raising, so nothing commits after the task was reported failed.

Nothing here is created at import time, and state is keyed by pid, so a forked child never uses
a socket or thread of its parent.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from asgiref.sync import async_to_sync
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import make_engine, make_sessionmaker
from db.errors import translate_errors
from worker.errors import UnsupportedPool
from worker.settings import get_settings

T = TypeVar("T")
SessionFn = Callable[[AsyncSession], Awaitable[T]]

log = logging.getLogger(__name__)

UNSUPPORTED_POOLS = ("gevent", "eventlet")


class Bridge(Protocol):
    name: str

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn()` to completion on an event loop and return its result."""

    def run_in_session(self, fn: SessionFn[T]) -> T:
        """Run `fn(session)` with a fresh `AsyncSession`; the session is closed afterwards."""

    def close(self) -> None:
        """Release connections and threads. The bridge is unusable afterwards."""


class _Call(Generic[T]):
    """One coroutine crossing the bridge, cancellable from the waiting thread."""

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._abandoned = False
        self.finished = threading.Event()

    async def run(self) -> T:
        with self._lock:
            if self._abandoned:  # the caller gave up before we were scheduled
                self.finished.set()
                raise asyncio.CancelledError
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
        try:
            return await self._fn()
        finally:
            self.finished.set()

    def cancel_and_wait(self, timeout: float) -> bool:
        """Cancel the coroutine on its loop and wait for it to unwind. True if it did in time."""
        with self._lock:
            self._abandoned = True
            task, loop = self._task, self._loop
        if task is None or loop is None or self.finished.is_set():
            return True
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # loop already closed: the coroutine is over
            return True
        return self.finished.wait(timeout)


def _guarded(call: _Call[T], start: Callable[[], T], timeout: float) -> T:
    try:
        return start()
    except BaseException as exc:
        # The waiting thread was interrupted (soft time limit, KeyboardInterrupt) or the
        # coroutine failed. Either way, make sure it is not still running before we re-raise.
        if not call.cancel_and_wait(timeout):
            log.error(
                "bridge: coroutine still running %.1fs after cancellation (%s); its connection "
                "is abandoned",
                timeout,
                type(exc).__name__,
            )
        raise


async def _in_session(maker: async_sessionmaker[AsyncSession], fn: SessionFn[T]) -> T:
    async with maker() as session:
        try:
            with translate_errors():
                return await fn(session)
        except BaseException:
            # On cancellation too: the rollback must finish before the caller re-raises.
            await _quiet_rollback(session)
            raise


async def _quiet_rollback(session: AsyncSession) -> None:
    try:
        await asyncio.shield(session.rollback())
    except Exception as exc:
        log.debug("bridge: rollback after failure failed too: %r", exc)


class NullPoolBridge:
    """`async_to_sync` + `NullPool`: a new loop, thread and connection for every call."""

    name = "nullpool"

    def __init__(self, database_url: str, cancel_timeout: float) -> None:
        # A NullPool engine holds no connections, so one engine may serve many loops.
        self._engine = make_engine(database_url)
        self._maker = make_sessionmaker(self._engine)
        self._timeout = cancel_timeout

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        call: _Call[T] = _Call(fn)
        return _guarded(call, lambda: async_to_sync(call.run)(), self._timeout)

    def run_in_session(self, fn: SessionFn[T]) -> T:
        return self.run(lambda: _in_session(self._maker, fn))

    def close(self) -> None:
        # NullPool keeps nothing open; disposing only drops the dialect's caches.
        self._engine.sync_engine.dispose(close=False)


class LoopBridge:
    """One persistent event loop in a dedicated thread, with a pooled engine bound to it."""

    name = "loop"

    def __init__(self, database_url: str, cancel_timeout: float, pool_size: int) -> None:
        self._timeout = cancel_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="async-bridge-loop", daemon=True
        )
        self._thread.start()
        self._engine = make_engine(database_url, pool_size=pool_size)
        self._maker = make_sessionmaker(self._engine)
        self._closed = False

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        if self._closed:
            raise RuntimeError("the loop bridge is closed")
        call: _Call[T] = _Call(fn)
        return _guarded(call, lambda: self._submit(call), self._timeout)

    def _submit(self, call: _Call[T]) -> T:
        # A bare lock is the cheapest cross-thread handoff; acquire() is interruptible by
        # signals, so a soft time limit still reaches the waiting thread.
        done = threading.Lock()
        done.acquire()
        outcome: list[Any] = []
        ctx = contextvars.copy_context()

        def finish(task: asyncio.Task[T]) -> None:
            outcome.append(task)
            done.release()

        def start() -> None:
            task = self._loop.create_task(call.run(), context=ctx)
            task.add_done_callback(finish)

        self._loop.call_soon_threadsafe(start)
        done.acquire()
        task: asyncio.Task[T] = outcome[0]
        return task.result()

    def run_in_session(self, fn: SessionFn[T]) -> T:
        return self.run(lambda: _in_session(self._maker, fn))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            future = asyncio.run_coroutine_threadsafe(self._engine.dispose(), self._loop)
            future.result(timeout=self._timeout)
        except Exception as exc:
            log.warning("bridge: engine dispose failed at shutdown: %r", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=self._timeout)
        if not self._thread.is_alive():
            self._loop.close()


# Per-process state. A child inherits the parent's object after fork but not its threads, so
# the pid tells us the object is not ours and must be dropped, never closed.
_lock = threading.Lock()
_state: tuple[int, Bridge] | None = None
_pool_size = 1


def configure_pool_size(size: int) -> None:
    """Size the `loop` bridge's pool to the number of tasks one process runs at once."""
    global _pool_size
    _pool_size = max(1, size)


def refuse_green_threads(pool_name: str = "") -> None:
    """Raise `UnsupportedPool` under gevent/eventlet: their monkey-patching breaks the bridge."""
    patched = [name for name in UNSUPPORTED_POOLS if name in pool_name.lower()]
    monkey = sys.modules.get("gevent.monkey")
    if not patched and monkey is not None and monkey.is_module_patched("threading"):
        patched = ["gevent"]
    if patched:
        raise UnsupportedPool(
            f"the {patched[0]} pool is not supported: it monkey-patches threads, which the async "
            "bridge relies on. Use -P prefork (default), -P threads or -P solo."
        )


def get_bridge() -> Bridge:
    """The bridge of this process, created on first use."""
    global _state
    pid = os.getpid()
    state = _state
    if state is not None and state[0] == pid:
        return state[1]
    with _lock:
        if _state is None or _state[0] != pid:
            _state = (pid, _create())
        return _state[1]


def _create() -> Bridge:
    refuse_green_threads()
    settings = get_settings()
    if settings.async_bridge == "loop":
        return LoopBridge(settings.database_url, settings.bridge_cancel_timeout, _pool_size)
    return NullPoolBridge(settings.database_url, settings.bridge_cancel_timeout)


def forget_inherited() -> None:
    """After fork: drop the parent's bridge without touching its sockets or threads."""
    global _state
    if _state is not None and _state[0] != os.getpid():
        _state = None


def shutdown() -> None:
    """Close this process's bridge, if it has one."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is not None and state[0] == os.getpid():
        state[1].close()


def run_in_session(fn: SessionFn[T]) -> T:
    """Run `fn(session)` through this process's bridge. The one entry point tasks use."""
    return get_bridge().run_in_session(fn)
