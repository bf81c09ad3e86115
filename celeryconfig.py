"""Celery configuration of the worker and beat.

`worker.runtime.app` loads this file by its path, under a private module name, so no other
`celeryconfig` module on `sys.path` can replace it. Every value comes from
`worker.runtime.settings.Settings`; nothing here reads the environment directly. The wire format
comes from the client (`articles_client.config`), so what the worker accepts is what the client
sends.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from articles_client import contract, queues
from articles_client.config import (
    AMQP_PUBLISH_OPTIONS,
    REDIS_CLIENT_SETTINGS,
    RESULT_RETRY_POLICY,
    WIRE_SETTINGS,
)
from worker.runtime import embedded
from worker.runtime.settings import VAR_DIR, get_settings

_settings = get_settings()
# The embedded default's SQLite files live under ./var/; SQLite does not create directories.
embedded.prepare_dirs(_settings)

broker_url = _settings.celery_broker_url
result_backend = _settings.celery_result_backend
# Redis results: Celery's backend, with the read-before-write of every stored state folded into
# one Lua script (one round trip per state instead of two; worker/runtime/result_store.py).
override_backends = {
    "redis": "worker.runtime.result_store:RedisResults",
    "rediss": "worker.runtime.result_store:RedisResults",
}

# JSON only on the wire (a pickle payload is refused, so no sender can run code in the worker),
# the default queue, sent events, and the Redis timeouts and result-store retries.
globals().update(WIRE_SETTINGS)
globals().update(REDIS_CLIENT_SETTINGS)
# The queues by kind of work and the routes to them, declared exactly as the client declares them
# (RabbitMQ refuses a queue redeclared with other arguments). A worker started without -Q
# consumes them all; the default deployment gives the pipeline queue a worker of its own.
task_queues = queues.task_queues(broker_url)
task_routes = queues.task_routes()

# At-least-once delivery: ack after the task returns, requeue when a prefork child dies, and hold
# only one unstarted message per process so a crash strands as little as possible.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# After a broker connection loss, let running tasks finish. Celery's alternative (True) terminates
# them expecting their ack to fail, but kombu's Redis channel reconnects for the ack, so a task
# terminated mid-way had its message acknowledged and was lost (tests/reliability/test_outages.py
# caught it). Letting it finish is safe because every task is idempotent: if its ack cannot be
# sent, the message is redelivered after the visibility timeout and the rerun changes nothing.
worker_cancel_long_running_tasks_on_connection_loss = False
broker_connection_retry_on_startup = True
# Messages that are not a runnable job (pickle, invalid UTF-8, unknown task) are dead-lettered
# with their raw body before Celery drops them.
worker_consumer = "worker.runtime.deadletters.consumer:DeadLetteringConsumer"
broker_connection_max_retries = None
# Recycling prefork children bounds slow leaks in task code (None: never, Celery's default).
worker_max_tasks_per_child = _settings.worker_max_tasks_per_child or None
worker_max_memory_per_child = _settings.worker_max_memory_per_child or None

_redis_options: dict[str, Any] = {
    "visibility_timeout": _settings.visibility_timeout,
    "unacked_restore_interval": _settings.unacked_restore_interval,
    # Make the interval above the whole sweep period (the default scans only every 10th tick).
    "unacked_restore_throttle": 1,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}
# kombu's SQLAlchemy transport hands every transport option to create_engine(), which refuses
# unknown ones (polling_interval included): the embedded broker keeps kombu's 1 s poll.
_sqla_options: dict[str, Any] = {}
broker_transport_options = (
    _sqla_options
    if _settings.celery_broker_url.startswith("sqla+")
    else dict(AMQP_PUBLISH_OPTIONS)
    if queues.is_amqp(broker_url)
    else _redis_options
)
result_backend_transport_options = {
    "visibility_timeout": _settings.visibility_timeout,
    # Reconnecting the result subscription: about 2 s of tries, not the 20 s default, so a
    # producer facing a dead Redis raises promptly (and recovers on its next call).
    "retry_policy": dict(RESULT_RETRY_POLICY),
}

task_soft_time_limit = _settings.task_soft_time_limit
task_time_limit = _settings.task_time_limit
result_expires = timedelta(seconds=_settings.result_expires)
# Results, not payloads: with extended results Celery copies every task's args and kwargs (an
# article's whole body) into the result backend for RESULT_EXPIRES, and publishes them twice.
# Flower needs none of it: its task events carry the arguments (truncated by the producer).
result_extended = False
# STARTED on request only (TASK_TRACK_STARTED): a result write per task that only an
# `AsyncResult.state` poller sees. Flower shows started tasks from task events, while it watches.
task_track_started = _settings.task_track_started

# Task events only while someone watches: sending them cost an empty task about 45% of its
# throughput, watched or not. Flower turns them on while it runs (its `enable_events` option,
# on by default, broadcasts `enable_events` every few seconds), as does `celery control
# enable_events`; control commands reach a worker through its pidbox, with or without gossip.
worker_send_task_events = False

worker_hijack_root_logger = True
worker_log_format = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
worker_task_log_format = (
    "%(asctime)s %(levelname)s %(processName)s %(task_name)s[%(task_id)s]: %(message)s"
)

include = [
    "worker.runtime.lifecycle",
    "worker.runtime.tasklog",
    "worker.runtime.deadletters.hooks",
    "tasks.articles",
    "tasks.maintenance",
    *_settings.task_modules,
]

beat_schedule_filename = str(VAR_DIR / "celerybeat-schedule")
# Exactly one beat publishes: the others stand by on a Redis lease (worker/runtime/beatlock.py).
beat_scheduler = "worker.runtime.beatlock:LockedScheduler"
beat_schedule = {
    "run-pipeline": {
        "task": contract.RUN_PIPELINE,
        "schedule": timedelta(seconds=_settings.pipeline_interval_seconds),
        "kwargs": {"batch_size": _settings.pipeline_batch_size},
        # A tick that waited longer than its interval is stale: the next one will do the work.
        "options": {"expires": _settings.pipeline_interval_seconds},
    },
    "reap-stale-claims": {
        "task": contract.REAP_STALE,
        "schedule": timedelta(seconds=_settings.reaper_interval_seconds),
        "options": {"expires": _settings.reaper_interval_seconds},
    },
}
