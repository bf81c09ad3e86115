"""A workaround for a kombu race that stops a Redis worker when the broker restarts.

When the broker connection drops, Celery closes the consumer's connection and kombu returns the
channel's delivered-but-unacknowledged messages to their queue (`QoS.restore_unacked`). If the
transport was already torn down, building a Redis client for that fails with
`AttributeError: 'NoneType' object has no attribute 'hostname'` (kombu 5.7.0,
`Channel._connparams`). `Connection.maybe_close_channel` ignores only connection and channel
errors, so the AttributeError escapes and the worker stops with "Unrecoverable error" instead of
reconnecting. Seen about one restart in four in tests/reliability/test_outages.py.

Nothing is lost by skipping that eager restore: with the Redis transport every delivered message
also sits in the `unacked` hash until it is acknowledged, and the periodic restore sweep puts it
back on its queue once `BROKER_VISIBILITY_TIMEOUT` has passed.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from kombu.transport import redis as redis_transport

log = logging.getLogger(__name__)

_MARK = "_articles_worker_fix"


def install() -> None:
    """Make `QoS.restore_unacked` survive a torn-down transport. Idempotent."""
    original = redis_transport.QoS.restore_unacked
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def restore_unacked(self: Any, client: Any = None) -> Any:
        try:
            return original(self, client)
        except AttributeError as exc:
            log.warning(
                "broker connection lost: %d unacknowledged message(s) stay in Redis's unacked "
                "hash and are redelivered after the visibility timeout (%s)",
                len(self._delivered),
                exc,
            )
            self._delivered.clear()
            return []

    setattr(restore_unacked, _MARK, True)
    setattr(redis_transport.QoS, "restore_unacked", restore_unacked)  # noqa: B010 - a patch
