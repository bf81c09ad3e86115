"""The dead-letter stores on real servers: one contract for all three (Redis, SQLite, a RabbitMQ
queue in this run's vhost), then what is particular to each."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection

from tests.support import rabbitmq
from tests.support.env import AMQP_URL, AMQP_VHOST, BROKER, REDIS_URL
from worker.runtime.deadletters import entry as entries
from worker.runtime.deadletters.amqp_store import LOCK_QUEUE, QUEUE, AmqpStore
from worker.runtime.deadletters.redis_store import INDEX_KEY, RedisStore
from worker.runtime.deadletters.sqlite_store import SqliteStore
from worker.runtime.deadletters.store import DeadLetterStore

pytestmark = pytest.mark.integration


def _entry(task_id: str, now: float, body: str = "x" * 10_000) -> entries.Entry:
    return entries.make_entry(
        task_id=task_id,
        task="articles.ingest",
        args=[],
        kwargs={"body": body},
        error_type="InvalidPayload",
        error_message="body: too long",
        reason="invalid payload",
        now=now,
    )


@pytest.fixture
def amqp_url(broker_url: str) -> str:
    """This run's vhost (made for the Redis pass too), without a dead-letter queue."""
    if BROKER != "amqp":
        rabbitmq.recreate_vhost(AMQP_VHOST)
    with Connection(AMQP_URL) as conn:
        conn.channel().queue_delete(QUEUE)
    return AMQP_URL


@pytest.fixture(params=["redis", "sqlite", "amqp"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeadLetterStore]:
    options = {"max_entry_bytes": 4096, "retention_seconds": 60}
    made: DeadLetterStore
    if request.param == "redis":
        request.getfixturevalue("clean_redis")
        made = RedisStore(REDIS_URL, counter_ttl=30, **options)
    elif request.param == "sqlite":
        made = SqliteStore(tmp_path / "dl.db", counter_ttl=30, **options)
    else:
        made = AmqpStore(request.getfixturevalue("amqp_url"), **options)
    yield made
    made.close()


def test_every_store_keeps_one_entry_per_task_id_in_order_and_trims(
    store: DeadLetterStore,
) -> None:
    now = time.time()
    store.add(_entry("b", now - 1))
    store.add(_entry("a", now - 2))
    listed = store.list()
    assert [e["task_id"] for e in listed] == ["a", "b"]
    assert listed[0]["truncated"] is True, "10,000 characters do not fit 4,096 bytes"
    assert store.list() == listed, "listing changes nothing"
    # Dead-lettered again (after a replay, say): one entry, the first failure time kept.
    store.add(_entry("a", now, body="short"))
    again = store.get("a")
    assert again is not None
    assert again["kwargs"] == {"body": "short"}
    assert again["first_failed_at"] == entries.iso(now - 2)
    assert [e["task_id"] for e in store.list()] == ["b", "a"]
    assert store.count() == 2
    store.add(_entry("ancient", now - 3600))
    assert store.get("ancient") is None, "older than the retention"
    assert store.count() == 2
    store.add(_entry("c", now))
    store.add(_entry("d", now))
    assert store.remove_many(["c", "d", "nobody"]) == 2
    assert store.remove("a")
    assert not store.remove("a")
    assert store.get("a") is None
    assert store.count() == 1
    assert store.trim(now + 120) == 1
    assert store.count() == 0


def test_redis_store_keys_and_counters(clean_redis: redis.Redis) -> None:
    store = RedisStore(REDIS_URL, max_entry_bytes=4096, retention_seconds=60, counter_ttl=30)
    now = time.time()
    store.add(_entry("b", now - 1))
    store.add(_entry("a", now - 2))
    assert clean_redis.hlen("articles:dead-letters") == 2
    assert [m.decode() for m in clean_redis.zrange(INDEX_KEY, 0, -1)] == ["a", "b"]
    assert store.delivered("t1") == 1
    assert store.delivered("t1") == 2
    assert 0 < clean_redis.ttl("articles:deliveries:t1") <= 30
    store.forget("t1")
    assert store.deliveries("t1") == 0
    store.close()


def test_amqp_store_is_a_durable_queue_that_readers_share(amqp_url: str) -> None:
    store = AmqpStore(amqp_url, max_entry_bytes=65536, retention_seconds=3600)
    now = time.time()
    total = 200
    for i in range(total):
        store.add(_entry(f"t{i:03}", now - total + i, body="short"))
    with Connection(amqp_url) as conn:
        declared = conn.channel().queue_declare(QUEUE, passive=True)
    assert declared.message_count == total
    # Two operators reading while a worker adds: each read sees every entry, none is lost.
    seen: list[int] = []
    errors: list[BaseException] = []

    def operator() -> None:
        try:
            reader = AmqpStore(amqp_url, max_entry_bytes=65536, retention_seconds=3600)
            for _ in range(5):
                seen.append(len(reader.list()))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=operator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for i in range(20):
        store.add(_entry(f"late{i:02}", now, body="short"))
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(seen) == 10
    assert min(seen) >= total
    assert max(seen) <= total + 20
    assert store.count() == total + 20
    assert [e["task_id"] for e in store.list()][:3] == ["t000", "t001", "t002"]
    # The lock is gone with its connection: the next reader does not wait for it.
    with Connection(amqp_url) as conn:
        channel = conn.channel()
        channel.queue_declare(LOCK_QUEUE, exclusive=True, auto_delete=True)
        started = time.monotonic()
        blocked = threading.Thread(target=store.count)
        blocked.start()
        blocked.join(timeout=0.5)
        assert blocked.is_alive(), "a reader waits while another connection holds the lock"
    blocked.join(timeout=30)
    assert not blocked.is_alive()
    waited = time.monotonic() - started
    print(f"\n{total + 20} AMQP dead letters; a held lock delayed a reader {waited:.2f}s")


class _Request:
    def __init__(self, task_id: str, redelivered: bool) -> None:
        self.id = task_id
        self.delivery_info = {"routing_key": "celery", "redelivered": redelivered}


class _Task:
    """What the prerun/postrun hooks read of a task: its app's broker and its request."""

    def __init__(self, broker_url: str, task_id: str, redelivered: bool) -> None:
        self.app = type("App", (), {"conf": {"broker_url": broker_url}})()
        self.request = _Request(task_id, redelivered)


@pytest.mark.parametrize(
    ("broker", "redelivered", "stored", "counted"),
    [
        ("redis://127.0.0.1:6379/0", False, None, 1),  # the healthy path: no round trip
        ("redis://127.0.0.1:6379/0", True, b"1", 2),  # after a crash: counted and stored
        ("amqp://guest@127.0.0.1//", False, None, 1),
        ("amqp://guest@127.0.0.1//", True, b"1", 2),
        ("sqla+sqlite:///x.db", False, b"1", 1),  # no redelivery flag there: always stored
    ],
)
def test_the_delivery_count_is_stored_only_when_a_message_comes_again(
    clean_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    broker: str,
    redelivered: bool,
    stored: bytes | None,
    counted: int,
) -> None:
    from worker.runtime.deadletters import hooks

    store = RedisStore(REDIS_URL, max_entry_bytes=4096, retention_seconds=60, counter_ttl=30)
    monkeypatch.setattr(hooks, "current_counter", lambda: store)
    task = _Task(broker, "job-1", redelivered)
    hooks._count_delivery(task_id="job-1", task=task)
    assert clean_redis.get("articles:deliveries:job-1") == stored
    assert hooks.deliveries_of("job-1") == counted
    hooks._forget_delivery(task_id="job-1")
    assert clean_redis.exists("articles:deliveries:job-1") == 0
    assert hooks.deliveries_of("job-1") == 0
    store.close()


def test_a_second_crash_counts_on_from_the_first(
    clean_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redeliveries that crashed leave their count; the next one sees first + crashes."""
    from worker.runtime.deadletters import hooks

    store = RedisStore(REDIS_URL, max_entry_bytes=4096, retention_seconds=60, counter_ttl=30)
    monkeypatch.setattr(hooks, "current_counter", lambda: store)
    broker = "redis://127.0.0.1:6379/0"
    hooks._count_delivery(task_id="job-2", task=_Task(broker, "job-2", False))
    hooks._counts.clear()  # the process died: no postrun
    hooks._stored.clear()
    hooks._count_delivery(task_id="job-2", task=_Task(broker, "job-2", True))
    hooks._counts.clear()
    hooks._stored.clear()
    hooks._count_delivery(task_id="job-2", task=_Task(broker, "job-2", True))
    assert hooks.deliveries_of("job-2") == 3
    hooks._forget_delivery(task_id="job-2")
    assert clean_redis.exists("articles:deliveries:job-2") == 0
    store.close()
