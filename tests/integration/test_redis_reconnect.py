"""kombu's Redis channel after its connection died: late acks, and messages settled on reconnect.

Each test uses a private `redis-server`, and simulates a connection loss exactly as Celery handles
one: `Connection.collect()` closes the channels and drops the transport, then a new connection is
made. No mock: every assertion reads the real `unacked` hash and queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import bootsteps
from celery.worker import state
from kombu import Connection, Consumer, Message, Queue

import worker.runtime.lifecycle  # noqa: F401 - installs the kombu fixes and the redelivery patch
from tests.support.servers import PrivateRedis, private_redis
from worker.runtime import redelivery

pytestmark = pytest.mark.integration

QUEUE = "reconnect-test"


@pytest.fixture
def broker() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.fixture
def worker_running() -> Iterator[None]:
    """What the consumer step does while a worker runs: closed channels orphan their messages."""
    previous = redelivery.set_active(True)
    yield
    redelivery.set_active(previous)


@dataclass(eq=False)
class Running:
    """Stands for a Celery request whose task is running: what `state.active_requests` holds."""

    message: Message


def receive(conn: Connection, count: int) -> list[Message]:
    """Publish `count` messages and receive them unacknowledged (they enter the unacked hash)."""
    queue = Queue(QUEUE)
    with conn.Producer() as producer:
        for n in range(count):
            producer.publish({"n": n}, routing_key=QUEUE, declare=[queue], serializer="json")
    received: list[Message] = []
    consumer = Consumer(conn.channel(), [queue], callbacks=[lambda _b, m: received.append(m)])
    consumer.qos(prefetch_count=count)
    with consumer:
        while len(received) < count:
            conn.drain_events(timeout=5)
    return received


def lose(conn: Connection) -> None:
    """Celery's handling of a lost connection: close every channel, drop the transport."""
    conn.collect()
    conn.release()


def unacked(client: redis.Redis) -> int:
    return int(client.hlen("unacked"))


def test_ack_on_a_channel_whose_connection_was_closed_reaches_redis(
    broker: PrivateRedis, worker_running: None
) -> None:
    client = broker.client()
    old = Connection(broker.url())
    (message,) = receive(old, 1)
    lose(old)
    assert message.channel.connection is None  # kombu 5.7 raised AttributeError from here on
    message.ack()
    assert unacked(client) == 0
    assert client.llen(QUEUE) == 0


def test_ack_on_a_torn_down_channel_reaches_redis(broker: PrivateRedis) -> None:
    """The state kombu 5.7 failed in: pools dropped and connection gone, nothing restored."""
    client = broker.client()
    conn = Connection(broker.url())
    (message,) = receive(conn, 1)
    channel = message.channel
    channel._disconnect_pools()  # what Channel.close() does before its restore...
    channel.connection = None  # ...and what Transport.close_channel() does after it
    message.ack()  # kombu 5.7: AttributeError: 'NoneType' object has no attribute 'client'
    assert unacked(client) == 0
    conn.release()


def test_ack_while_redis_is_down_is_a_connection_error_then_settled(
    broker: PrivateRedis, worker_running: None
) -> None:
    old = Connection(broker.url())
    (message,) = receive(old, 1)
    lose(old)
    broker.stop()
    with pytest.raises(redis.ConnectionError):
        message.ack()  # Celery logs "Couldn't ack" for a connection error, and carries on
    broker.start()
    with Connection(broker.url()) as new:
        done = redelivery.settle(new)
    assert (len(done.acknowledged), len(done.returned)) == (1, 0)
    client = broker.client()
    assert unacked(client) == 0
    assert client.llen(QUEUE) == 0  # acknowledged, not redelivered


def test_on_reconnect_held_messages_return_at_once_and_running_ones_wait_for_their_ack(
    broker: PrivateRedis, worker_running: None
) -> None:
    client = broker.client()
    old = Connection(broker.url())
    first, *_held = receive(old, 3)
    running = Running(first)
    state.active_requests.add(running)  # type: ignore[arg-type]
    try:
        lose(old)
        assert unacked(client) == 3  # nothing restored while the connection died
        with Connection(broker.url()) as new:
            done = redelivery.settle(new)
    finally:
        state.active_requests.discard(running)  # type: ignore[arg-type]
    assert (len(done.returned), done.running) == (2, 1)
    assert client.llen(QUEUE) == 2
    assert unacked(client) == 1
    first.ack()  # the task ends after the reconnect: its ack goes through the closed channel
    assert unacked(client) == 0
    assert client.llen(QUEUE) == 2


def test_a_stopping_worker_restores_at_close_as_kombu_does(broker: PrivateRedis) -> None:
    previous = redelivery.set_active(False)
    try:
        old = Connection(broker.url())
        receive(old, 2)
        old.release()
    finally:
        redelivery.set_active(previous)
    client = broker.client()
    assert client.llen(QUEUE) == 2
    assert unacked(client) == 0


def test_consumer_step_stops_after_celery_dropped_the_connection(broker: PrivateRedis) -> None:
    conn = Connection(broker.url())
    channel = conn.channel()
    step: Any = bootsteps.ConsumerStep.__new__(bootsteps.ConsumerStep)
    step.consumers = [Consumer(channel, [Queue(QUEUE)])]
    lose(conn)
    # Celery sets consumer.connection to None before restarting the steps (Gossip's error).
    step._close(SimpleNamespace(connection=None), True)
    assert channel.closed


def test_a_message_popped_while_redis_went_down_is_pushed_back_on_reconnect(
    broker: PrivateRedis, worker_running: None
) -> None:
    old = Connection(broker.url())
    with old.Producer() as producer:
        producer.publish({"n": 1}, routing_key=QUEUE, declare=[Queue(QUEUE)], serializer="json")
    channel = old.channel()
    message = channel.basic_get(QUEUE, no_ack=True)  # popped, as BRPOP pops before recording
    broker.stop()
    with pytest.raises(redis.ConnectionError):
        channel.qos.append(message, message.delivery_tag)  # the unacked entry cannot be written
    lose(old)
    broker.start()
    with Connection(broker.url()) as new:
        done = redelivery.settle(new)
    client = broker.client()
    assert len(done.returned) == 1
    assert client.llen(QUEUE) == 1
    assert unacked(client) == 0
