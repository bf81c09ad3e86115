"""Dead-letter entries: fields, ISO times, the size cap, the SQLite store, the store's choice."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from kombu.transport.native_delayed_delivery import calculate_routing_key

from worker.runtime.deadletters import entry as entries
from worker.runtime.deadletters.factory import store_location
from worker.runtime.deadletters.sqlite_store import SqliteStore
from worker.runtime.settings import Settings

pytestmark = pytest.mark.unit

NOW = 1_790_000_000.25


def _entry(**overrides: object) -> entries.Entry:
    fields: dict[str, object] = {
        "task_id": "t-1",
        "task": "articles.ingest",
        "args": [],
        "kwargs": {"title": "x"},
        "error_type": "InvalidPayload",
        "error_message": "title: too long",
        "reason": "invalid payload",
        "now": NOW,
        "queue": "celery",
    }
    fields.update(overrides)
    return entries.make_entry(**fields)  # type: ignore[arg-type]


def test_entry_holds_the_documented_fields_in_iso_utc() -> None:
    entry = _entry()
    assert entry["error"] == {"type": "InvalidPayload", "message": "title: too long"}
    assert entry["first_failed_at"] == entry["last_failed_at"]
    assert entry["last_failed_at"] == "2026-09-21T14:13:20.250Z"
    assert entries.parse_iso(entry["last_failed_at"]) == NOW
    assert entry["deliveries"] == 1
    assert "raw_body" not in entry


def test_undecodable_body_is_kept_in_base64_instead_of_arguments() -> None:
    entry = _entry(raw_body=b"\x80\x04garbage\xff", args=None, kwargs=None)
    assert entry["args"] is None
    assert entry["kwargs"] is None
    assert base64.b64decode(entry["raw_body"]) == b"\x80\x04garbage\xff"


def test_an_entry_over_its_cap_has_its_long_strings_cut() -> None:
    entry = _entry(kwargs={"title": "t", "body": "x" * 200_000}, args=["y" * 50_000])
    text = entries.encode(entry, 8192)
    assert len(text.encode()) <= 8192
    decoded = json.loads(text)
    assert decoded["truncated"] is True
    assert decoded["kwargs"]["title"] == "t"
    assert decoded["kwargs"]["body"].endswith("[truncated]")
    assert decoded["task_id"] == "t-1"
    small = json.loads(entries.encode(_entry(), 8192))
    assert small["truncated"] is False


def test_sqlite_store_keeps_order_counts_and_trims_by_retention(tmp_path: Path) -> None:
    store = SqliteStore(
        tmp_path / "dl.db", max_entry_bytes=4096, retention_seconds=60, counter_ttl=60
    )
    now = time.time()  # stores trim by the real clock on every write
    store.add(_entry(task_id="old", now=now - 120))
    assert store.count() == 0, "older than the retention: trimmed on write"
    store.add(_entry(task_id="b", now=now + 2))
    store.add(_entry(task_id="a", now=now + 1))
    assert [e["task_id"] for e in store.list()] == ["a", "b"]
    # A second failure of the same id replaces the entry but keeps its first failure time.
    store.add(_entry(task_id="a", now=now + 3))
    again = store.get("a")
    assert again is not None
    assert again["first_failed_at"] < again["last_failed_at"]
    assert store.count() == 2
    assert store.remove("a")
    assert not store.remove("a")
    assert store.trim(now + 1000) == 1
    assert store.delivered("t") == 1
    assert store.delivered("t") == 2
    assert store.deliveries("t") == 2
    store.forget("t")
    assert store.deliveries("t") == 0
    store.close()


def _settings(**env: str) -> Settings:
    base = {
        "DATABASE_URL": "postgresql+asyncpg://u@db/x",
        "CELERY_BROKER_URL": "redis://broker:6379/0",
        "CELERY_RESULT_BACKEND": "redis://results:6379/1",
    }
    return Settings(**{**base, **env})  # type: ignore[arg-type]


def test_the_store_lives_beside_the_queues() -> None:
    assert store_location(_settings()) == "redis://broker:6379/0"
    rabbit = _settings(CELERY_BROKER_URL="amqp://guest@rabbit//")
    assert store_location(rabbit) == "redis://results:6379/1"
    override = _settings(DEAD_LETTER_URL="rediss://dl:6380/3")
    assert store_location(override) == "rediss://dl:6380/3"
    embedded = Settings(DATABASE_URL="", CELERY_BROKER_URL="", CELERY_RESULT_BACKEND="")  # type: ignore[call-arg]
    assert store_location(embedded).endswith("var/dead-letters.db")
    # RabbitMQ with database results: the dead letters live in RabbitMQ, no extra server.
    no_redis = _settings(
        CELERY_BROKER_URL="amqp://guest@rabbit//", CELERY_RESULT_BACKEND="db+sqlite:///r.db"
    )
    assert store_location(no_redis) == "amqp://guest@rabbit//"


def test_a_delayed_retry_s_routing_key_names_its_queue() -> None:
    # A countdown retry on RabbitMQ arrives with 28 bits before the routing key; the entry (and a
    # replay) must name the queue, not that key.
    delayed = calculate_routing_key(3, "articles.ingest")
    assert delayed.endswith(".articles.ingest")
    assert entries.queue_of(delayed) == "articles.ingest"
    assert entries.queue_of(calculate_routing_key(7, delayed)) == "articles.ingest"
    assert entries.queue_of("celery") == "celery"
    assert entries.queue_of("") is None
    made = entries.make_entry(
        task_id="t", task="x", error_type="E", error_message="m", reason="r", now=0, queue=delayed
    )
    assert made["queue"] == "articles.ingest"
