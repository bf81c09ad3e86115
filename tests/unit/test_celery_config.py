"""The Celery settings a production user expects, and the pools the bridge refuses."""

from __future__ import annotations

import pytest

from articles_client.errors import ArticleRejected, InvalidPayload, TransientError, UnsupportedPool
from tasks.base import ArticleTask
from worker.runtime import bridge
from worker.runtime.app import app

pytestmark = pytest.mark.unit


def test_json_only_on_the_wire() -> None:
    conf = app.conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.result_accept_content == ["json"]


def test_at_least_once_delivery() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup is True


def test_time_limits_fit_inside_the_visibility_timeout() -> None:
    conf = app.conf
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    # Redis redelivers an unacked message after visibility_timeout: it must outlast any task.
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.result_backend_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.result_expires.total_seconds() > 0


def test_events_for_flower_and_the_default_queue() -> None:
    conf = app.conf
    # Off until someone watches: Flower (or `celery control enable_events`) turns them on.
    assert conf.worker_send_task_events is False
    # Producers send no "task-sent" events: they doubled a publish (bench/sent_events.py).
    assert conf.task_send_sent_event is False
    assert conf.task_default_queue == "celery"


def test_retry_policy_of_the_public_tasks() -> None:
    from worker.runtime.task_base import WorkerTask

    # The app's own task class: a plain @app.task gets the deadline retries and dead letters.
    assert issubclass(app.Task, WorkerTask)
    assert issubclass(ArticleTask, WorkerTask)
    assert "worker.runtime.deadletters.hooks" in app.conf.include
    # Bad input is an expected failure: not retried, logged without a traceback.
    assert set(ArticleTask.throws) == {InvalidPayload, ArticleRejected}
    assert not issubclass(InvalidPayload, TransientError)


@pytest.mark.parametrize(
    "pool", ["gevent", "eventlet", "celery.concurrency.gevent", "celery.concurrency.eventlet"]
)
def test_green_thread_pools_are_refused(pool: str) -> None:
    with pytest.raises(UnsupportedPool, match="pool is not supported") as caught:
        bridge.refuse_green_threads(pool)
    assert "-P prefork" in str(caught.value)


@pytest.mark.parametrize(
    "pool", ["", "prefork", "solo", "threads", "celery.concurrency.prefork", "custom.thread"]
)
def test_thread_friendly_pools_are_accepted(pool: str) -> None:
    bridge.refuse_green_threads(pool)
