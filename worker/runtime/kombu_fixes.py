"""Fixes for kombu 5.7's Redis transport when the broker connection drops under a running worker.

When Redis restarts, Celery closes the consumer's connection and reconnects, but tasks that were
running keep their messages, which belong to the closed channel. kombu's Redis channel builds a
client lazily from `self.connection.client`; once the channel is closed that is `None`, so the
late acknowledgement of such a task (`QoS.ack` -> `_remove_from_indices` -> `conn_or_acquire` ->
`_create_client` -> `_connparams`) raised `AttributeError: 'NoneType' object has no attribute
'client'` (or `... 'hostname'` when only the transport was torn down, in `restore_unacked`).
Celery handles only connection errors there, so the worker stopped with "Unrecoverable error".

The root fix, `_connparams`: a channel remembers the parameters it connected with, and a closed
channel builds its client from them. An acknowledgement after the reconnect then reaches the
same Redis and removes the message from the `unacked` hash, exactly as on a live channel; if Redis
is still down it fails with a connection error, which Celery logs and survives. As a net for the
rest of this class of race, any `AttributeError` from an ack, reject or restore on a closed
channel is re-raised as a Redis `ConnectionError`, never as an unrecoverable error, and a restore
at close that cannot reach Redis leaves the messages to the visibility sweep, with a warning.

Celery's own half of the race: after a connection loss it drops `consumer.connection` before it
stops the consumer steps, and `ConsumerStep._close` (Gossip) then passes `None` to
`ignore_errors`: "Error on restarting Gossip: AttributeError(... 'connection_errors')". The
consumers' channels are closed without it. And when the consumer reconnects it registers the pool
again with the event loop; a pool process that exited meanwhile (its exit already handled, so
its sentinel descriptor is `None`) made that fail with "ValueError: file descriptor is None",
another unrecoverable error: such a process is skipped, and the pool is maintained to replace it.

What happens to the messages of the closed channel is `worker.runtime.redelivery`'s job; this module
records what it needs: acknowledgements that could not be sent, and messages popped from their
queue whose `unacked` entry could not be written.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

import redis.exceptions
from celery import bootsteps
from celery.concurrency.asynpool import AsynPool
from kombu.message import Message
from kombu.transport import redis as redis_transport

log = logging.getLogger(__name__)

_MARK = "_articles_worker_fix"
_PARAMS = "_articles_connparams"
_UNSETTLED = "_articles_unsettled"
_UNRECORDED = "_articles_unrecorded"


def detached(channel: Any) -> bool:
    """True when the channel's connection, or that connection's kombu client, is gone."""
    connection = getattr(channel, "connection", None)
    return connection is None or getattr(connection, "client", None) is None


def unsettled(qos: Any) -> set[str]:
    """Delivery tags whose ack (or reject without requeue) failed to reach Redis."""
    tags: set[str] = qos.__dict__.setdefault(_UNSETTLED, set())
    return tags


def unrecorded(qos: Any) -> list[Message]:
    """Messages popped from their queue whose `unacked` entry could not be written."""
    messages: list[Message] = qos.__dict__.setdefault(_UNRECORDED, [])
    return messages


def task_id(message: Message) -> str:
    """The Celery task id a message carries, for log lines."""
    headers = getattr(message, "headers", None) or {}
    return str(headers.get("id") or message.delivery_tag)


def patch(owner: type, name: str, *wrappers: Callable[[Any], Any]) -> None:
    """Wrap `owner.name` in `wrappers`, innermost first, once."""
    original = getattr(owner, name)
    if getattr(original, _MARK, False):
        return
    patched = original
    for wrap in wrappers:
        patched = functools.wraps(original)(wrap(patched))
    setattr(patched, _MARK, True)
    setattr(owner, name, patched)


def _connparams(original: Any) -> Any:
    def connparams(self: Any, asynchronous: bool = False) -> Any:
        cache: dict[bool, dict[str, Any]] = self.__dict__.setdefault(_PARAMS, {})
        if detached(self):
            if asynchronous not in cache:
                raise redis.exceptions.ConnectionError("the channel's broker connection is closed")
            return dict(cache[asynchronous])
        params = original(self, asynchronous)
        cache[asynchronous] = dict(params)
        return params

    return connparams


def _as_connection_error(original: Any) -> Any:
    """A QoS operation that fails with AttributeError on a closed channel is a connection error."""

    def operation(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except AttributeError as exc:
            if not detached(self.channel):
                raise
            raise redis.exceptions.ConnectionError(
                f"the channel's broker connection is closed ({exc})"
            ) from exc

    return operation


def _restore_or_leave(original: Any) -> Any:
    """Restoring a channel's messages as it closes is a convenience: if the broker cannot be
    reached, they stay in the `unacked` hash, from which the visibility sweep returns them."""

    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return original(self, client)
        except (*self.channel.connection_errors, AttributeError) as exc:
            if isinstance(exc, AttributeError) and not detached(self.channel):
                raise
            log.warning(
                "could not restore %d unacknowledged message(s) while closing the channel; "
                "they are redelivered after the visibility timeout (%r)",
                len(self._delivered),
                exc,
            )
            self._delivered.clear()
            return []

    return restore_unacked


def _settling(original: Any) -> Any:
    """Remember a delivery tag whose ack or final reject could not be sent."""

    def settle(self: Any, delivery_tag: str, *args: Any, **kwargs: Any) -> Any:
        requeue = bool(kwargs.get("requeue", args[0] if args else False))
        try:
            return original(self, delivery_tag, *args, **kwargs)
        except self.channel.connection_errors:
            if not requeue:
                unsettled(self).add(delivery_tag)
            raise

    return settle


def _append(original: Any) -> Any:
    """Remember a message whose `unacked` entry could not be written: it is in no queue now."""

    def append(self: Any, message: Message, delivery_tag: str) -> Any:
        try:
            return original(self, message, delivery_tag)
        except self.channel.connection_errors:
            unrecorded(self).append(message)
            log.warning(
                "task %s left its queue but could not be recorded as unacknowledged; "
                "it is put back when the worker reconnects",
                task_id(message),
            )
            raise

    return append


def _consumer_step_close(original: Any) -> Any:
    def close(self: Any, c: Any, cancel_consumers: bool = True) -> Any:
        if c.connection is not None:
            return original(self, c, cancel_consumers)
        # The connection died and was dropped: nothing can be cancelled on the broker. Close the
        # channels so they release what they hold; they are dead, so any error is expected.
        for consumer in self.consumers or []:
            if consumer.channel is not None:
                with contextlib.suppress(Exception):
                    consumer.channel.close()
        return None

    return close


def _track_child_process(original: Any) -> Any:
    def track(self: Any, proc: Any, hub: Any) -> Any:
        # `_untrack_child_process` sets the sentinel to None once the exit was handled; the
        # process is gone, so there is nothing to watch: let the pool replace it.
        if getattr(proc, "_sentinel_poll", 0) is None:
            hub.call_soon(self.maintain_pool)
            return None
        return original(self, proc, hub)

    return track


def install() -> None:
    """Patch kombu's Redis channel and QoS, Celery's consumer steps and prefork pool. Idempotent."""
    patch(redis_transport.Channel, "_connparams", _connparams)
    qos = redis_transport.QoS
    patch(qos, "ack", _as_connection_error, _settling)
    patch(qos, "reject", _as_connection_error, _settling)
    patch(qos, "restore_by_tag", _as_connection_error)
    patch(qos, "restore_unacked", _restore_or_leave)
    patch(qos, "append", _append)
    patch(bootsteps.ConsumerStep, "_close", _consumer_step_close)
    patch(AsynPool, "_track_child_process", _track_child_process)
