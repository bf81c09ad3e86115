"""The one place where sync code (Celery tasks) enters async code (SQLAlchemy on asyncpg).

Two implementations of one contract, chosen by `ASYNC_BRIDGE`:

- `nullpool` (the designed default): `asgiref.async_to_sync` runs each call on a brand-new event
  loop in a new thread, with a `NullPool` engine, so no connection ever outlives the loop that
  opened it. Simple and obviously correct; it pays a thread, a loop and a database login per call.
- `loop`: each process owns one event loop and a pooled engine bound to it; connections are
  reused. Much faster; slightly more machinery. Where a process runs one task at a time (prefork
  children, the solo pool) the loop runs inline, in the calling thread, only during a call;
  elsewhere (the threads pool, code outside a worker) it runs in a dedicated thread and calls
  are handed to it.

Both give the same guarantee when the task's thread is interrupted (Celery's soft time limit is a
SIGUSR1 whose handler raises `SoftTimeLimitExceeded`): the coroutine is cancelled, its session
rolls back, and the bridge waits (bounded) for that before raising, so nothing commits after the
task was reported failed. Inline, the bridge turns the signal into a cancellation for the call's
duration, since an exception raised inside the loop's own code would be swallowed or leave the
loop broken.

A call may also carry its own soft limit (`soft_limit=`): the bridge then cancels the coroutine at
that deadline on its loop and raises `SoftTimeLimitExceeded` after the rollback, so the limit holds
under the threads and solo pools, where Celery enforces none. Each bridge also scopes the
process's lifespans (`resources()`, see `worker.runtime.lifespan`): for the process under `loop`,
for the call under `nullpool`.

Nothing here is created at import time, and state is keyed by pid, so a forked child never uses
a socket or thread of its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar

from asgiref.sync import async_to_sync
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from articles_client.errors import NestedBridgeCall, UnsupportedPool
from db.engine import EngineOptions, make_engine, make_sessionmaker
from db.errors import translate_errors
from worker.runtime import lifespan, tracing
from worker.runtime.settings import get_settings

T = TypeVar("T")
SessionFn = Callable[[AsyncSession], Awaitable[T]]

log = logging.getLogger(__name__)

UNSUPPORTED_POOLS = ("gevent", "eventlet")

# Set while a coroutine runs on a bridge. Sync code it calls (directly, or through asgiref's
# sync_to_async, which copies the context) sees it, so a second crossing is refused at once:
# on the loop bridge it would wait forever for the loop that is waiting for it.
_running_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bridge_call", default=None
)


def _refuse_nested(bridge_name: str) -> None:
    if _running_call.get() is not None:
        raise NestedBridgeCall(
            f"nested bridge call ({bridge_name} bridge): a coroutine running on the bridge "
            "called sync code that crossed the bridge again; await the async function "
            "directly instead of going through the sync wrapper"
        )


async def _marked(bridge_name: str, fn: Callable[[], Awaitable[T]]) -> T:
    token = _running_call.set(bridge_name)
    try:
        return await fn()
    finally:
        _running_call.reset(token)


class Bridge(Protocol):
    name: str

    def run(self, fn: Callable[[], Awaitable[T]], *, soft_limit: float | None = None) -> T:
        """Run `fn()` to completion on an event loop and return its result.

        With `soft_limit`, the coroutine is cancelled after that many seconds and the call
        raises Celery's `SoftTimeLimitExceeded` once it has unwound.
        """

    def run_in_session(self, fn: SessionFn[T], *, soft_limit: float | None = None) -> T:
        """Run `fn(session)` with a fresh `AsyncSession`; the session is closed afterwards."""

    def resources(self) -> AbstractAsyncContextManager[lifespan.Resources]:
        """The lifespans of the running call's loop (called on that loop, inside `run`)."""

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A fresh session, opened inside a running call (on its loop), as `run_in_session`'s:
        errors translated, rolled back on error or cancellation, closed on exit. For a call
        that needs several transactions of its own, such as one per batch."""

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


def _log_abandoned(timeout: float, exc: BaseException) -> None:
    log.error(
        "bridge: coroutine still running %.1fs after cancellation (%s); its connection "
        "is abandoned",
        timeout,
        type(exc).__name__,
    )


def _guarded(call: _Call[T], start: Callable[[], T], timeout: float) -> T:
    try:
        return start()
    except BaseException as exc:
        # The waiting thread was interrupted (soft time limit, KeyboardInterrupt) or the
        # coroutine failed. Either way, make sure it is not still running before we re-raise.
        if not call.cancel_and_wait(timeout):
            _log_abandoned(timeout, exc)
        raise


def _within(soft_limit: float | None, fn: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """`fn`, cancelled at `soft_limit` seconds if given: the bridge's own soft time limit.

    Celery enforces time limits only under prefork; this holds under every pool. The timeout
    wraps the whole call, session included, so the rollback has finished before it raises.
    """
    if soft_limit is None:
        return fn
    return functools.partial(_deadline, soft_limit, fn)


async def _deadline(soft_limit: float, fn: Callable[[], Awaitable[T]]) -> T:
    timeout = asyncio.timeout(soft_limit)
    try:
        async with timeout:
            return await fn()
    except TimeoutError:
        if timeout.expired():
            raise SoftTimeLimitExceeded(
                f"soft time limit ({soft_limit:g}s) exceeded on the async bridge"
            ) from None
        raise


async def _in_session(
    engine: AsyncEngine, maker: async_sessionmaker[AsyncSession], fn: SessionFn[T]
) -> T:
    # The session keeps one connection for the whole call: left to itself it gives its
    # connection back at every commit, and a call that commits and goes on (process_article,
    # run_pipeline's batches) would check out again, under `nullpool` a new login each time.
    # Translated around the checkout too: a database that refuses the login is a transient
    # failure like one lost mid-statement (retried, and named so in dead letters and the CLI).
    with translate_errors():
        async with engine.connect() as connection, maker(bind=connection) as session:
            try:
                return await fn(session)
            except BaseException:
                # On cancellation too: the rollback must finish before the caller re-raises.
                await _quiet_rollback(session)
                raise


@contextlib.asynccontextmanager
async def _session(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    # `_in_session` as a context manager. That one stays a plain coroutine: it is on every
    # task's path, where a generator-based context manager would add its frames to each call.
    async with maker() as session:
        try:
            with translate_errors():
                yield session
        except BaseException:
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

    def __init__(
        self, database_url: str, cancel_timeout: float, options: EngineOptions | None = None
    ) -> None:
        # A NullPool engine holds no connections, so one engine may serve many loops.
        self._engine = make_engine(database_url, options=options)
        self._maker = make_sessionmaker(self._engine)
        self._timeout = cancel_timeout

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def run(self, fn: Callable[[], Awaitable[T]], *, soft_limit: float | None = None) -> T:
        _refuse_nested(self.name)
        call: _Call[T] = _Call(lambda: _marked(self.name, _within(soft_limit, fn)))
        return _guarded(call, lambda: async_to_sync(call.run)(), self._timeout)

    def run_in_session(self, fn: SessionFn[T], *, soft_limit: float | None = None) -> T:
        return self.run(lambda: _in_session(self._engine, self._maker, fn), soft_limit=soft_limit)

    def resources(self) -> AbstractAsyncContextManager[lifespan.Resources]:
        # Each call's loop is closed after it: nothing loop-bound may outlive the call.
        return lifespan.per_call()

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return _session(self._maker)

    def close(self) -> None:
        # NullPool keeps nothing open; disposing only drops the dialect's caches.
        self._engine.sync_engine.dispose(close=False)


class _LoopCall(Generic[T]):
    """One coroutine handed to the loop thread. Its methods other than `wait` run on the loop.

    `done` is a bare lock held until the task is over: the cheapest cross-thread wake-up, and
    its `acquire()` is interrupted by signals, so a soft time limit reaches the waiting thread.
    """

    __slots__ = ("_ctx", "_fn", "cancelled", "done", "task")

    def __init__(self, fn: Callable[[], Awaitable[T]], ctx: contextvars.Context) -> None:
        self._fn = fn
        self._ctx = ctx
        self.task: asyncio.Task[T] | None = None
        self.cancelled = False
        self.done = threading.Lock()
        self.done.acquire()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(_await(self._fn), context=self._ctx)
        self.task.add_done_callback(self._finish)

    def _finish(self, _: asyncio.Task[T]) -> None:
        self.done.release()

    def cancel(self) -> None:
        # Scheduled after `start` by the same thread, so it runs after it (the loop's queue is
        # FIFO). No task then means `start` was never scheduled: nothing will run.
        if self.task is None:
            if not self.cancelled:
                self.cancelled = True
                self.done.release()
        else:
            # A task not yet started is cancelled before its first line; either way the done
            # callback fires once the coroutine (and its session's rollback) has unwound.
            self.task.cancel()


async def _await(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


def _loop_thread_is_current(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _SoftLimitCancels:
    """For an inline call in the main thread: SIGUSR1 (Celery's soft time limit) cancels the
    call's task instead of raising wherever the loop happens to be. `restore()` puts the previous
    handler back and says whether the signal came."""

    __slots__ = ("_previous", "fired")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], enabled: bool
    ) -> None:
        self.fired = False
        self._previous: Any = None
        if not enabled or threading.current_thread() is not threading.main_thread():
            return  # Python delivers signals to the main thread only

        def cancel(signum: int, frame: Any) -> None:
            self.fired = True
            # As from another thread: the handler runs between two bytecodes of the loop.
            loop.call_soon_threadsafe(task.cancel)

        self._previous = signal.signal(signal.SIGUSR1, cancel)

    def restore(self) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None
        return self.fired


class LoopBridge:
    """One persistent event loop, with a pooled engine bound to it.

    Threaded (the default), the loop runs in a dedicated thread and each call is handed to it:
    the caller waits, and an interruption (Celery's soft time limit) can only break that wait.
    Inline (`inline=True`, for a process that runs one task at a time), the caller's thread runs
    the loop for the duration of each call: no thread hand-off and its two wake-ups per call,
    about a tenth of a millisecond of CPU on a loaded worker. There a signal handler that raised
    could fire inside asyncio's own callbacks, where asyncio logs and swallows the exception, so
    during a call SIGUSR1 (Celery's soft time limit) cancels the coroutine instead, and the call
    then raises `SoftTimeLimitExceeded`.
    """

    name = "loop"

    def __init__(
        self,
        database_url: str,
        cancel_timeout: float,
        pool_size: int,
        options: EngineOptions | None = None,
        *,
        inline: bool = False,
        soft_limit_signal: bool = True,
    ) -> None:
        self._timeout = cancel_timeout
        self._loop = asyncio.new_event_loop()
        self._inline = inline
        # Inline in a prefork child SIGUSR1 is the soft time limit; in a solo worker's main
        # process it is Celery's "dump the threads' stacks", which must not cancel the task.
        self._soft_limit_signal = soft_limit_signal
        # Inline calls from several threads (not expected where inline is chosen) take turns.
        self._inline_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if not inline:
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="async-bridge-loop", daemon=True
            )
            self._thread.start()
        # Connections are opened lazily, on the loop, by the first calls.
        self._engine = make_engine(database_url, pool_size=pool_size, options=options)
        self._maker = make_sessionmaker(self._engine)
        self._resources = lifespan.Resources()
        self._closed = False

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def run(self, fn: Callable[[], Awaitable[T]], *, soft_limit: float | None = None) -> T:
        if self._closed:
            raise RuntimeError("the loop bridge is closed")
        _refuse_nested(self.name)
        if threading.current_thread() is self._thread or (
            self._inline and _loop_thread_is_current(self._loop)
        ):
            # Sync code called from a loop callback outside any bridge call: same deadlock.
            raise NestedBridgeCall("nested bridge call: the loop bridge was called from its loop")
        if self._inline:
            return self._run_inline(lambda: _marked(self.name, _within(soft_limit, fn)))
        call: _LoopCall[T] = _LoopCall(
            lambda: _marked(self.name, _within(soft_limit, fn)), contextvars.copy_context()
        )
        try:
            self._loop.call_soon_threadsafe(call.start)
            call.done.acquire()
        except BaseException as exc:
            self._abandon(call, exc)
            raise
        assert call.task is not None  # done was released by the task's done callback
        return call.task.result()

    def _run_inline(self, fn: Callable[[], Awaitable[T]]) -> T:
        with self._inline_lock:
            loop = self._loop
            task = loop.create_task(_await(fn), context=contextvars.copy_context())
            limit = _SoftLimitCancels(loop, task, self._soft_limit_signal)
            try:
                result = loop.run_until_complete(task)
            except BaseException as exc:
                # The coroutine failed or was cancelled by the soft limit (its session already
                # rolled back), or a signal handler raised out of the loop (shutdown): then it
                # is still pending, and is cancelled and awaited here, bounded, before raising.
                if not task.done():
                    self._cancel_inline(task, exc)
                if limit.restore() and not isinstance(exc, SoftTimeLimitExceeded):
                    raise SoftTimeLimitExceeded("soft time limit exceeded") from None
                raise
            if limit.restore():
                # The limit fired as the coroutine finished: the task fails, as under Celery.
                raise SoftTimeLimitExceeded("soft time limit exceeded")
            return result

    def _cancel_inline(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        task.cancel()
        try:
            self._loop.run_until_complete(asyncio.wait((task,), timeout=self._timeout))
        except BaseException as again:
            log.error("bridge: cancelling the interrupted call failed: %r", again)
        if not task.done():
            _log_abandoned(self._timeout, exc)

    def _abandon(self, call: _LoopCall[Any], exc: BaseException) -> None:
        """The waiting thread was interrupted: cancel the call and wait (bounded) for it."""
        try:
            self._loop.call_soon_threadsafe(call.cancel)
        except RuntimeError:  # the loop is closed: nothing runs on it any more
            return
        if not call.done.acquire(timeout=self._timeout):
            _log_abandoned(self._timeout, exc)

    def run_in_session(self, fn: SessionFn[T], *, soft_limit: float | None = None) -> T:
        return self.run(lambda: _in_session(self._engine, self._maker, fn), soft_limit=soft_limit)

    @contextlib.asynccontextmanager
    async def resources(self) -> AsyncIterator[lifespan.Resources]:
        # One loop for the process's lifetime: lifespans are shared and exited at `close`.
        yield self._resources

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return _session(self._maker)

    def close(self) -> None:
        """Exit the lifespans and dispose of the engine on the loop, then stop and close it."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            with self._inline_lock:
                try:
                    self._loop.run_until_complete(
                        asyncio.wait_for(self._shutdown(), timeout=self._timeout)
                    )
                except Exception as exc:
                    log.warning("bridge: engine dispose failed at shutdown: %r", exc)
                self._loop.close()
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            future.result(timeout=self._timeout)
        except Exception as exc:
            log.warning("bridge: engine dispose failed at shutdown: %r", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=self._timeout)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        # Closing the connections here, on their own loop, is what avoids "Event loop is
        # closed" and unclosed-connection warnings at interpreter exit.
        try:
            await self._resources.aclose()
        except Exception as exc:
            log.warning("bridge: a lifespan failed to exit: %r", exc)
        await self._engine.dispose()
        await self._loop.shutdown_asyncgens()
        await self._loop.shutdown_default_executor()


# Per-process state. A child inherits the parent's object after fork but not its threads, so
# the pid tells us the object is not ours and must be dropped, never closed.
_lock = threading.Lock()
_state: tuple[int, Bridge] | None = None
_pool_size = 1
# Run the `loop` bridge's loop in the calling thread (set by the worker under prefork and solo),
# and whether SIGUSR1 is then the soft time limit (prefork only).
_inline = False
_soft_limit_signal = False
# Bridges inherited from a parent stay referenced: were they collected, their finalizers would
# touch the parent's sockets and loop from the child (and warn about unclosed connections).
_inherited: list[Bridge] = []


def configure_pool_size(size: int) -> None:
    """Size the `loop` bridge's pool to the number of tasks one process runs at once."""
    global _pool_size
    _pool_size = max(1, size)


def configure_inline(inline: bool, *, soft_limit_signal: bool) -> None:
    """Run the `loop` bridge inline, for pools whose processes run one task at a time; with
    `soft_limit_signal` (prefork), SIGUSR1 cancels the running call."""
    global _inline, _soft_limit_signal
    _inline, _soft_limit_signal = inline, soft_limit_signal


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
    options = engine_options()
    created: LoopBridge | NullPoolBridge
    if settings.async_bridge == "loop":
        created = LoopBridge(
            settings.database_url,
            settings.bridge_cancel_timeout,
            _pool_size,
            options,
            inline=_inline,
            soft_limit_signal=_soft_limit_signal,
        )
    else:
        created = NullPoolBridge(settings.database_url, settings.bridge_cancel_timeout, options)
    tracing.instrument_engine(created.engine)
    return created


def engine_options() -> EngineOptions:
    """The engine options the settings ask for: PgBouncer mode and the session limits."""
    settings = get_settings()
    return EngineOptions(
        pgbouncer=settings.database_pgbouncer,
        statement_timeout_ms=round(settings.database_statement_timeout * 1000),
        lock_timeout_ms=round(settings.database_lock_timeout * 1000),
        idle_in_transaction_timeout_ms=round(settings.database_idle_in_transaction_timeout * 1000),
    )


def forget_inherited() -> None:
    """After fork: drop the parent's bridge without touching its sockets or threads."""
    global _state
    if _state is not None and _state[0] != os.getpid():
        _inherited.append(_state[1])
        _state = None


def _after_fork_in_child() -> None:
    global _lock
    # The parent may have forked while another of its threads held the lock.
    _lock = threading.Lock()
    forget_inherited()


os.register_at_fork(after_in_child=_after_fork_in_child)


def shutdown() -> bool:
    """Close this process's bridge, if it has one; True if it had one."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is not None and state[0] == os.getpid():
        state[1].close()
        return True
    return False


def run_in_session(fn: SessionFn[T]) -> T:
    """Run `fn(session)` through this process's bridge. The one entry point tasks use."""
    return get_bridge().run_in_session(fn)
