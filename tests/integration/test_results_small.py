"""Results, not payloads: after an ingest, its article body is nowhere in Redis (broker and result
backend share this run's Redis db here), and result meta carries no args or kwargs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import redis

from articles_client import contract
from worker.runtime.app import app

pytestmark = pytest.mark.integration


def everything_in(client: redis.Redis) -> dict[bytes, bytes]:
    """Every key of the db with its whole value, whatever its type, as bytes."""
    found: dict[bytes, bytes] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        value: Any
        if kind == b"string":
            value = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = client.smembers(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1)
        else:
            value = kind
        found[key] = repr(value).encode()
    return found


def holding(client: redis.Redis, marker: bytes) -> list[bytes]:
    return [key for key, value in everything_in(client).items() if marker in value]


def test_no_article_body_in_redis_after_an_ingest(
    live_worker: Any, clean_redis: redis.Redis
) -> None:
    marker = f"needle{uuid.uuid4().hex}"
    body = f"A long article. {marker} " + "Words that fill a large body. " * 8000  # ~250 kB
    result = app.send_task(contract.INGEST, kwargs={"title": "Big", "body": body})
    assert result.get(timeout=30)["created"] is True

    # The message leaves Redis when the worker acks it, just after the result is stored.
    deadline = time.monotonic() + 10
    while (keys := holding(clean_redis, marker.encode())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert keys == [], f"the body is still in Redis under {keys}"

    meta = json.loads(clean_redis.get(f"celery-task-meta-{result.id}") or b"{}")
    assert meta["status"] == "SUCCESS"
    assert not {"args", "kwargs"} & set(meta), sorted(meta)
    assert len(json.dumps(meta)) < 500
