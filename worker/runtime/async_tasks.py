"""`@async_task`: an `async def` function becomes a Celery task with the article tasks' guarantees.

    from sqlalchemy.ext.asyncio import AsyncSession
    from worker import async_task

    @async_task(name="reports.count_articles")
    async def count_articles(session: AsyncSession, *, status: str) -> int:
        ...

- Registration on `worker.app`; every Celery task option passes through (`queue`,
  `soft_time_limit`, `rate_limit`, `max_retries`, ...). `.delay`, `.apply_async`, `.s()` and `.si()`
  are Celery's own; the return value is made JSON-able and is the task's result.
- A first parameter annotated `AsyncSession` gets a fresh session from the bridge, rolled back
  on error or cancellation and closed afterwards. Without one the coroutine just runs there.
- Arguments are validated from the signature (`worker.runtime.task_signature`), or with
  `payload=Model` as that versioned contract model; a bad payload fails at once with
  `InvalidPayload`, never retried.
- A parameter annotated `TaskContext` receives the request, progress reports, lifespans and
  further sessions.
- The base class is the article tasks' (`tasks.base.ArticleTask`): the same retry policy for
  transient database errors, the same expected failures.
- The task's soft time limit is enforced on the coroutine by the bridge under every pool, and
  raises Celery's `SoftTimeLimitExceeded` after the rollback.
- `once=True` (session tasks): a duplicate delivery of a task id whose transaction committed
  does nothing (docs/design.md section 3).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from celery import Task
from celery.exceptions import Ignore
from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.contract import CONTRACT_HEADER, Payload
from db import queries
from tasks.base import ArticleTask
from worker.runtime import bridge
from worker.runtime.app import app
from worker.runtime.task_context import TaskContext
from worker.runtime.task_signature import TaskSignature, read_signature

__all__ = ["AsyncTask", "TaskContext", "async_task", "celery_enforces_time_limits"]

log = logging.getLogger(__name__)

AsyncFn = Callable[..., Awaitable[Any]]

# Under prefork Celery itself raises SoftTimeLimitExceeded at the limit (a signal to the child).
# The bridge's deadline then comes this much later, as a backstop: were both to fire at once,
# Celery's signal could land while the failure is already being reported.
PREFORK_BACKSTOP_SECONDS = 1.0
_celery_enforces = False


def celery_enforces_time_limits(enforced: bool) -> None:
    """Told by the worker's lifecycle at start: True under prefork, the one pool that does."""
    global _celery_enforces
    _celery_enforces = enforced


class AsyncTask(ArticleTask):
    """The base of every `@async_task`: the article tasks' policy plus the function it runs."""

    spec: TaskSignature
    coroutine: AsyncFn
    once: bool = False


def async_task(
    *,
    name: str,
    payload: type[Payload] | None = None,
    once: bool = False,
    **options: Any,
) -> Callable[[AsyncFn], Any]:
    """Register the decorated `async def` function as the Celery task `name` on `worker.app`.

    `options` are Celery's task options, passed through. `payload=Model` validates the
    arguments as that contract model (`articles_client.contract.Payload`), as the article tasks
    do: positional arguments in field order, the sender's contract version from the message
    header `articles_contract`, the canvas predecessors the contract accepts; the function
    takes the model in its one parameter annotated `Model`. `once=True` (session tasks only)
    records the task id in `task_runs` in the task's own transaction, so a duplicate delivery
    after a committed run does nothing; such a task must commit once, at its end.
    """
    if "bind" in options:
        raise TypeError(f"{name}: bind is not needed; take a TaskContext parameter instead")
    base = options.pop("base", AsyncTask)
    if not (isinstance(base, type) and issubclass(base, AsyncTask)):
        raise TypeError(f"{name}: base must be a subclass of AsyncTask")

    def decorate(fn: AsyncFn) -> Any:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"{name}: @async_task decorates an `async def` function")
        spec = read_signature(fn, name, TaskContext, payload)
        if once and not spec.session:
            raise TypeError(f"{name}: once=True needs an AsyncSession first parameter")
        attrs: dict[str, Any] = {"spec": spec, "coroutine": staticmethod(fn), "once": once}
        register: Any = app.task  # celery-types cannot type class attributes passed as options
        return register(name=name, base=base, bind=True, **attrs, **options)(_runner(fn))

    return decorate


def _runner(fn: AsyncFn) -> Callable[..., Any]:
    """The task's `run`, named like `fn`: Celery takes the name, module and docstring from it."""

    def run(task: AsyncTask, *args: Any, **kwargs: Any) -> Any:
        return _execute(task, args, kwargs)

    run.__name__, run.__qualname__ = fn.__name__, fn.__qualname__
    run.__module__, run.__doc__ = fn.__module__, fn.__doc__
    return run


def _execute(task: AsyncTask, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    spec = task.spec
    # Read only for a contract model: the header is absent from most requests.
    version = getattr(task.request, CONTRACT_HEADER, None) if spec.model else None
    params = spec.parse(args, kwargs, version)
    the_bridge = bridge.get_bridge()
    limit = soft_limit(task)
    fn: AsyncFn = task.coroutine
    if spec.context is not None:
        fn = _with_context(fn, spec.context, the_bridge, task)
    if spec.session:
        if task.once and task.request.id:
            fn = _once(fn, task)
        session_fn = fn
        result = the_bridge.run_in_session(
            lambda session: session_fn(session, **params), soft_limit=limit
        )
    else:
        result = the_bridge.run(lambda: fn(**params), soft_limit=limit)
    return to_jsonable_python(result)


def soft_limit(task: Task[Any, Any]) -> float | None:
    """The deadline the bridge enforces: the limit Celery would apply to this request."""
    limits = task.request.timelimit
    soft = (limits[1] if limits else None) or task.soft_time_limit
    soft = soft or task.app.conf.task_soft_time_limit
    if not soft:
        return None
    return float(soft) + (PREFORK_BACKSTOP_SECONDS if _celery_enforces else 0.0)


def _with_context(fn: AsyncFn, param: str, the_bridge: bridge.Bridge, task: AsyncTask) -> AsyncFn:
    # Captured here, in the worker thread: Celery keeps both per thread.
    request, backend = task.request, task.backend

    async def call(*args: Any, **kwargs: Any) -> Any:
        async with the_bridge.resources() as resources:
            kwargs[param] = TaskContext(task, request, backend, resources, the_bridge.session)
            return await fn(*args, **kwargs)

    return call


def _once(fn: AsyncFn, task: AsyncTask) -> AsyncFn:
    task_id, task_name = str(task.request.id), str(task.name)

    async def call(session: AsyncSession, **kwargs: Any) -> Any:
        if not await queries.mark_task_run(session, task_id=task_id, task_name=task_name):
            log.info("%s[%s] already ran: nothing done", task_name, task_id)
            # Ignore leaves the first run's result in place (a return would overwrite it).
            raise Ignore()
        return await fn(session, **kwargs)

    return call
