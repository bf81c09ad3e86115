"""Dead letters in Redis, beside the queues: a hash of entries and a sorted set for their order.

Keys (docs/design.md section 2): `articles:dead-letters` (task id -> JSON entry),
`articles:dead-letters:index` (task id scored by last failure time, for order and retention) and
`articles:deliveries:<task id>` (INCR + EXPIRE).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection

import redis

from worker.runtime.deadletters import entry as entries
from worker.runtime.deadletters.store import Entry

ENTRIES_KEY = "articles:dead-letters"
INDEX_KEY = "articles:dead-letters:index"
COUNTER_PREFIX = "articles:deliveries:"


class RedisStore:
    """A `DeadLetterStore` and `DeliveryCounter` on one Redis database."""

    def __init__(
        self, url: str, *, max_entry_bytes: int, retention_seconds: float, counter_ttl: int
    ) -> None:
        # Short timeouts: a worker must not hang on its store when Redis is going away.
        self._client = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
        )
        self.max_entry_bytes = max_entry_bytes
        self.retention_seconds = retention_seconds
        self.counter_ttl = counter_ttl

    def add(self, entry: Entry) -> None:
        previous = self.get(entry["task_id"])
        merged = entries.merge(previous, entry)
        score = entries.parse_iso(merged["last_failed_at"])
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(ENTRIES_KEY, merged["task_id"], entries.encode(merged, self.max_entry_bytes))
            pipe.zadd(INDEX_KEY, {merged["task_id"]: score})
            pipe.execute()
        self.trim(time.time())

    def list(self) -> list[Entry]:
        ids: list[bytes] = list(self._client.zrange(INDEX_KEY, 0, -1))  # type: ignore[arg-type]
        if not ids:
            return []
        raw = self._client.hmget(ENTRIES_KEY, ids)
        return [json.loads(r) for r in raw if r is not None]

    def get(self, task_id: str) -> Entry | None:
        raw = self._client.hget(ENTRIES_KEY, task_id)
        return None if raw is None else dict(json.loads(raw))

    def remove(self, task_id: str) -> bool:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(ENTRIES_KEY, task_id)
            pipe.zrem(INDEX_KEY, task_id)
            removed, _ = pipe.execute()
        return bool(removed)

    def remove_many(self, task_ids: Collection[str]) -> int:
        return sum(self.remove(task_id) for task_id in task_ids)

    def count(self) -> int:
        return int(self._client.hlen(ENTRIES_KEY))

    def trim(self, now: float) -> int:
        cutoff = now - self.retention_seconds
        old = self._client.zrangebyscore(INDEX_KEY, "-inf", f"({cutoff}")
        if not old:
            return 0
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(ENTRIES_KEY, *old)
            pipe.zrem(INDEX_KEY, *old)
            pipe.execute()
        return len(old)

    def delivered(self, task_id: str) -> int:
        key = COUNTER_PREFIX + task_id
        with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.counter_ttl)
            count, _ = pipe.execute()
        return int(count)

    def deliveries(self, task_id: str) -> int:
        raw = self._client.get(COUNTER_PREFIX + task_id)
        return int(raw) if raw is not None else 0

    def forget(self, task_id: str) -> None:
        self._client.delete(COUNTER_PREFIX + task_id)

    def close(self) -> None:
        self._client.close()
