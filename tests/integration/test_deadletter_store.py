"""The Redis dead-letter store on a real Redis: the documented keys, order, retention, counters."""

from __future__ import annotations

import time

import pytest
import redis

from tests.support.env import REDIS_URL
from worker.runtime.deadletters import entry as entries
from worker.runtime.deadletters.redis_store import INDEX_KEY, RedisStore

pytestmark = pytest.mark.integration


def _entry(task_id: str, now: float) -> entries.Entry:
    return entries.make_entry(
        task_id=task_id,
        task="articles.ingest",
        args=[],
        kwargs={"body": "x" * 10_000},
        error_type="InvalidPayload",
        error_message="body: too long",
        reason="invalid payload",
        now=now,
    )


def test_redis_store_keys_order_retention_and_counters(clean_redis: redis.Redis) -> None:
    store = RedisStore(REDIS_URL, max_entry_bytes=4096, retention_seconds=60, counter_ttl=30)
    now = time.time()
    store.add(_entry("b", now - 1))
    store.add(_entry("a", now - 2))
    assert clean_redis.hlen("articles:dead-letters") == 2
    assert [m.decode() for m in clean_redis.zrange(INDEX_KEY, 0, -1)] == ["a", "b"]
    listed = store.list()
    assert [e["task_id"] for e in listed] == ["a", "b"]
    assert listed[0]["truncated"] is True, "10,000 characters do not fit 4,096 bytes"
    store.add(_entry("ancient", now - 3600))
    assert store.get("ancient") is None, "trimmed on write"
    assert store.count() == 2
    assert store.remove("a")
    assert not store.remove("a")
    assert store.delivered("t1") == 1
    assert store.delivered("t1") == 2
    assert 0 < clean_redis.ttl("articles:deliveries:t1") <= 30
    store.forget("t1")
    assert store.deliveries("t1") == 0
    store.close()
