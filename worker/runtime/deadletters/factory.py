"""Which dead-letter store the settings choose (docs/design.md section 2), one per process."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from articles_client.errors import ConfigurationError
from worker.runtime.deadletters.amqp_store import AmqpStore
from worker.runtime.deadletters.redis_store import RedisStore
from worker.runtime.deadletters.sqlite_store import SqliteStore
from worker.runtime.deadletters.store import DeadLetterStore, DeliveryCounter
from worker.runtime.settings import VAR_DIR, Settings, get_settings, mask_url

SQLITE_FILE = "dead-letters.db"
_REDIS = ("redis://", "rediss://")
_AMQP = ("amqp://", "amqps://", "pyamqp://")


def store_location(settings: Settings) -> str:
    """Where dead letters live under these settings: a Redis URL, the RabbitMQ broker's URL (its
    queue `articles.dead_letters`) or the SQLite file's path.

    Raises `ConfigurationError` when no store fits (a broker none of the stores knows).
    """
    if settings.dead_letter_url:
        return settings.dead_letter_url
    broker = settings.celery_broker_url
    if broker.startswith(_REDIS):
        return broker
    if broker.startswith(_AMQP):
        # Beside the counters when results are on Redis; else in RabbitMQ, no extra server.
        backend = settings.celery_result_backend
        return backend if backend.startswith(_REDIS) else broker
    if broker.startswith("sqla+sqlite"):
        return str((VAR_DIR / SQLITE_FILE).resolve())
    raise ConfigurationError(
        f"DEAD_LETTER_URL: no dead-letter store for broker {mask_url(broker)} with result "
        f"backend {mask_url(settings.celery_result_backend)}; set DEAD_LETTER_URL to a Redis URL"
    )


def open_store(settings: Settings) -> DeadLetterStore:
    """A new store for these settings; the caller closes it."""
    location = store_location(settings)
    max_bytes = settings.dead_letter_max_entry_bytes
    retention = settings.dead_letter_retention_seconds
    # A crashed delivery comes back within the visibility timeout; a count older than the
    # retention means nothing any more.
    ttl = int(retention)
    if location.startswith(_REDIS):
        return RedisStore(
            location, max_entry_bytes=max_bytes, retention_seconds=retention, counter_ttl=ttl
        )
    if location.startswith(_AMQP):
        return AmqpStore(location, max_entry_bytes=max_bytes, retention_seconds=retention)
    return SqliteStore(
        Path(location), max_entry_bytes=max_bytes, retention_seconds=retention, counter_ttl=ttl
    )


_lock = threading.Lock()
_current: tuple[int, DeadLetterStore] | None = None


def current_store() -> DeadLetterStore:
    """This process's store, opened on first use (after a fork the child opens its own)."""
    global _current
    with _lock:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), open_store(get_settings()))
        return _current[1]


def current_counter() -> DeliveryCounter | None:
    """This process's delivery counter: the store itself, when it keeps counts (the AMQP store
    does not: hooks.py reads the quorum queue's own delivery count instead)."""
    store = current_store()
    return store if isinstance(store, DeliveryCounter) else None
