"""Give back, on reconnect, the messages a worker held when its Redis connection died.

With the Redis transport a delivered message sits in the `unacked` hash until it is acknowledged;
if nobody acknowledges it, any worker's periodic sweep returns it to its queue only after
`BROKER_VISIBILITY_TIMEOUT` (900 s). When the connection drops, Celery forgets the messages it had
reserved but not started, and kombu's attempt to restore them while closing the channel runs
against the Redis that just went away (or, when it is reachable, also returns the messages of
tasks still running, which would then run twice at once). So they waited out the 900 s.

Instead, while the worker runs, a channel closed under it hands its unacknowledged messages to
this module (`orphan`), and the `RedeliverOnReconnect` consumer step settles them on the new
connection as soon as it is up, and once more at shutdown:

- a message whose task is still running is left alone: its acknowledgement comes when the task
  ends (`worker.runtime.kombu_fixes` lets a closed channel send it), so a running task is not
  redelivered;
- a message whose acknowledgement failed (Redis was down when its task ended) is acknowledged;
- every other message (reserved, prefetched, ETA, or rejected for requeue while Redis was down)
  goes back to its queue, and one popped from its queue whose `unacked` entry was never written
  is pushed back too.

A worker killed outright settles nothing: its messages still wait for the visibility timeout.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, bootsteps
from celery.worker import state
from kombu import Connection
from kombu.transport import redis as redis_transport

from worker.runtime.kombu_fixes import patch, task_id, unrecorded, unsettled

log = logging.getLogger(__name__)

_lock = threading.Lock()
_orphans: list[Any] = []  # QoS objects of channels closed while the worker kept running
_active = False  # the consumer step is running: closing a channel orphans its messages


@dataclass
class Settled:
    """What one pass did: messages returned to their queue, acks sent, messages left running."""

    returned: list[str] = field(default_factory=list)  # task ids
    acknowledged: list[str] = field(default_factory=list)
    running: int = 0


def set_active(active: bool) -> bool:
    """Turn orphaning on (the worker consumes) or off (it stops); returns the previous state."""
    global _active
    with _lock:
        previous, _active = _active, active
    return previous


def orphan(qos: Any) -> bool:
    """Take over `qos`'s unacknowledged messages if the worker keeps running; False otherwise."""
    with _lock:
        if not _active:
            return False
        qos._flush()
        if (qos._delivered or unrecorded(qos)) and all(qos is not o for o in _orphans):
            _orphans.append(qos)
        return True


def running_tags() -> set[str]:
    """Delivery tags of the tasks this worker is running now."""
    tags = set()
    for request in list(state.active_requests):
        message = getattr(request, "message", None)
        if message is not None:
            tags.add(message.delivery_tag)
    return tags


def settle(connection: Connection) -> Settled:
    """Settle the orphaned messages through `connection` (a live one)."""
    done = Settled()
    with _lock:
        orphans = list(_orphans)
    if not orphans:
        return done
    running = running_tags()
    channel: Any = connection.channel()
    try:
        for qos in orphans:
            _settle_one(qos, channel, running, done)
            if not qos._delivered and not unrecorded(qos):
                with _lock:
                    _orphans.remove(qos)
    finally:
        channel.close()
    return done


def _settle_one(qos: Any, channel: Any, running: set[str], done: Settled) -> None:
    qos._flush()
    failed_acks = unsettled(qos)
    with channel.conn_or_acquire() as client:
        for tag, message in list(qos._delivered.items()):
            if tag in running:
                done.running += 1
                continue
            if tag in failed_acks:
                channel.qos._remove_from_indices(tag, client.pipeline()).execute()
                done.acknowledged.append(task_id(message))
            else:
                channel.qos.restore_by_tag(tag, client=client)
                done.returned.append(task_id(message))
            qos._delivered.pop(tag, None)
            failed_acks.discard(tag)
        lost = unrecorded(qos)
        while lost:
            _push_back(channel, client, lost[0])
            done.returned.append(task_id(lost.pop(0)))


def _push_back(channel: Any, client: Any, message: Any) -> None:
    """Requeue a message that left its queue but never reached the `unacked` hash."""
    info = message.delivery_info
    pipe = client.pipeline()
    channel.qos._remove_from_indices(message.delivery_tag, pipe)
    channel._do_restore_message(message._raw, info["exchange"], info["routing_key"], pipe)
    pipe.execute()


def _settle_logged(connection: Connection | None, when: str) -> None:
    if connection is None:
        return
    try:
        done = settle(connection)
    except Exception as exc:
        # Never stop the worker for this: what is not settled now is settled on the next
        # connect, and at worst the visibility timeout returns it.
        log.warning("could not settle messages of the lost broker connection %s: %r", when, exc)
        return
    if done.returned or done.acknowledged:
        log.warning(
            "%s: messages of the lost broker connection: returned to their queue %s, "
            "acknowledged %s, %d task(s) still running",
            when,
            done.returned,
            done.acknowledged,
            done.running,
        )


class RedeliverOnReconnect(bootsteps.StartStopStep):
    """Consumer step: settle the lost connection's messages each time the consumer connects."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c: Any) -> None:
        set_active(True)
        _settle_logged(c.connection, "after reconnecting")

    def shutdown(self, c: Any) -> None:
        # Before the Connection step closes the connection: at a warm shutdown no task is
        # running, so kombu's own restore at close is right again.
        _settle_logged(c.connection, "at shutdown")
        set_active(False)


def _restore_unacked_once(original: Any) -> Any:
    """kombu restores a closing channel's messages at once; while the worker runs, orphan them."""

    def restore_unacked_once(self: Any, stderr: Any = None) -> Any:
        if orphan(self):
            self._on_collect.cancel()
            return None
        return original(self, stderr)

    return restore_unacked_once


def install(app: Celery) -> None:
    """Orphan, rather than restore, a closed channel's messages; settle them on reconnect."""
    patch(redis_transport.QoS, "restore_unacked_once", _restore_unacked_once)
    app.steps["consumer"].add(RedeliverOnReconnect)
