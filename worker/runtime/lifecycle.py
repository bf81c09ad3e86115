"""Process lifecycle: refuse unsupported pools and an evicting Redis, build the bridge after fork,
dispose at shutdown.

Loaded by the worker through `include` in celeryconfig, never by the producer.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery.signals import (
    beat_init,
    celeryd_after_setup,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from articles_client.errors import ConfigurationError, UnsupportedPool
from worker.runtime import (
    async_tasks,
    bridge,
    embedded,
    eviction,
    kombu_fixes,
    redelivery,
    started_state,
    timer_compaction,
    tracing,
)
from worker.runtime.app import app
from worker.runtime.deadletters.factory import store_location
from worker.runtime.settings import get_settings, mask_url

log = logging.getLogger(__name__)

kombu_fixes.install()
redelivery.install(app)
started_state.install()
timer_compaction.install()


@worker_init.connect
def _check_pool(sender: Any = None, **_: Any) -> None:
    pool = getattr(sender, "pool_cls", None)
    pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "") or ""
    try:
        bridge.refuse_green_threads(pool_name)
    except UnsupportedPool as exc:
        # Exceptions from signal receivers are only logged by Celery; SystemExit stops the worker.
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    concurrency = int(getattr(sender, "concurrency", 1) or 1)
    # A prefork child runs one task at a time; a threads pool shares one process bridge.
    threaded = "thread" in pool_name.lower()
    bridge.configure_pool_size(concurrency if threaded else 1)
    # One task at a time per process (prefork children, solo): the loop runs in the task's thread.
    bridge.configure_inline(not threaded, soft_limit_signal="prefork" in pool_name.lower())
    # Only prefork enforces time limits; under the others the bridge is the only enforcer.
    async_tasks.celery_enforces_time_limits("prefork" in pool_name.lower())
    if "prefork" not in pool_name.lower() and "billiard" not in pool_name.lower():
        # solo and threads pools run tasks in this process; prefork children set up their own.
        tracing.configure()


@celeryd_after_setup.connect
def _announce_fallback(**_: Any) -> None:
    # After logging is set up, before the worker consumes: a worker that picked the embedded
    # default reads only ./var/ of its own directory, which must be said, not discovered.
    notice = embedded.fallback_notice(get_settings())
    if notice:
        log.warning("%s", notice)


@worker_init.connect
def _refuse_evicting_redis(**_: Any) -> None:
    # The broker's Redis and the dead-letter store's (docs/design.md section 2); a store that
    # fits no broker is refused here too, with its message naming DEAD_LETTER_URL.
    settings = get_settings()
    try:
        urls = {settings.celery_broker_url, store_location(settings)}
        for url in sorted(u for u in urls if u.startswith(("redis://", "rediss://"))):
            eviction.check_no_eviction(url)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


@worker_ready.connect
def _announce(**_: Any) -> None:
    settings = get_settings()
    log.info(
        "articles worker ready: bridge=%s database=%s broker=%s",
        settings.async_bridge,
        mask_url(settings.database_url),
        mask_url(settings.celery_broker_url),
    )


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Cheap and non-blocking (Celery kills a child that takes over 4 s here): no connection yet.
    bridge.forget_inherited()
    tracing.configure()


@worker_process_shutdown.connect
def _process_shutdown(pid: int | None = None, **_: Any) -> None:
    # A prefork child leaving: recycled (max tasks / max memory) or at worker shutdown.
    if bridge.shutdown():
        log.info("pool process %s exiting: database connections closed", pid)
    tracing.shutdown()


@worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    # Under solo and threads pools the tasks ran in this process.
    bridge.shutdown()
    tracing.shutdown()


@beat_init.connect
def _beat_announce(**_: Any) -> None:
    settings = get_settings()
    notice = embedded.fallback_notice(settings)
    if notice:
        log.warning("%s", notice)
    log.info("beat using broker %s", mask_url(settings.celery_broker_url))
