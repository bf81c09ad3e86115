"""The worker's Redis result backend (worker/runtime/result_store.py) on a real Redis: Celery's
rule (a stored SUCCESS is never overwritten) in one round trip, with Celery's expiry and
publish behaviour kept."""

from __future__ import annotations

import json
import threading

import pytest
import redis
from celery import Celery

from tests.support.env import REDIS_URL
from worker.runtime.result_store import RedisResults

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(clean_redis: redis.Redis) -> RedisResults:
    app = Celery("result-store-test", backend=REDIS_URL, broker=REDIS_URL)
    app.conf.result_expires = 600
    app.conf.result_failure_expires = 60
    app.conf.override_backends = {"redis": "worker.runtime.result_store:RedisResults"}
    return RedisResults(app=app, url=REDIS_URL)


def _meta(client: redis.Redis, task_id: str) -> dict[str, object]:
    raw = client.get(f"celery-task-meta-{task_id}")
    assert raw is not None
    loaded: dict[str, object] = json.loads(raw)
    return loaded


def test_the_worker_app_uses_it_for_redis_results() -> None:
    from worker import app

    app.conf.task_acks_late  # noqa: B018 (loads the configuration, as a worker does first)
    assert isinstance(app.backend, RedisResults)


def test_states_are_stored_with_celerys_expiry(
    backend: RedisResults, clean_redis: redis.Redis
) -> None:
    backend.store_result("t1", None, "RETRY")
    assert _meta(clean_redis, "t1")["status"] == "RETRY"
    backend.store_result("t1", {"n": 1}, "SUCCESS")
    assert _meta(clean_redis, "t1") | {"date_done": None} == {
        "status": "SUCCESS",
        "result": {"n": 1},
        "traceback": None,
        "children": None,
        "date_done": None,
        "task_id": "t1",
    }
    assert 590 < clean_redis.ttl("celery-task-meta-t1") <= 600
    backend.store_result("t2", ValueError("boom"), "FAILURE")
    assert _meta(clean_redis, "t2")["status"] == "FAILURE"
    assert 50 < clean_redis.ttl("celery-task-meta-t2") <= 60
    assert backend.get_task_meta("t1")["result"] == {"n": 1}


def test_a_stored_success_is_never_overwritten(
    backend: RedisResults, clean_redis: redis.Redis
) -> None:
    """A late duplicate (a redelivered copy failing, or starting) leaves the success alone."""
    backend.store_result("t3", "first", "SUCCESS")
    backend.store_result("t3", ValueError("late duplicate"), "FAILURE")
    backend.store_result("t3", None, "STARTED")
    meta = _meta(clean_redis, "t3")
    assert (meta["status"], meta["result"]) == ("SUCCESS", "first")


def test_a_success_is_published_to_waiting_callers(
    backend: RedisResults, clean_redis: redis.Redis
) -> None:
    """`AsyncResult.get()` waits on the key's channel: the write must still be published."""
    pubsub = clean_redis.pubsub()
    pubsub.subscribe("celery-task-meta-t4")
    assert pubsub.get_message(timeout=5) is not None  # the subscribe confirmation
    got: list[object] = []
    listener = threading.Thread(target=lambda: got.append(pubsub.get_message(timeout=5)))
    listener.start()
    backend.store_result("t4", 42, "SUCCESS")
    listener.join()
    pubsub.close()
    message = got[0]
    assert isinstance(message, dict)
    assert json.loads(message["data"])["result"] == 42
