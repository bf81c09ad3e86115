"""Exactly one beat publishes: a lease in Redis that a second beat respects, with failover.

`LockedScheduler` is Celery's `PersistentScheduler` that publishes only while it holds the lease
`articles:beat:lock` (a Redis key with a random token and a TTL of `BEAT_LOCK_TTL` seconds). The
holder renews it on every tick, at least every third of the TTL; any other beat stands by and
tries to take it on each of its ticks, so when the holder dies the lease expires and a standby
takes over within one TTL plus one tick. A beat stopped normally releases the lease at once.

While Redis is unreachable the holder keeps its role until its lease would have expired (nobody
else can take it meanwhile, and its publishes fail and are logged like any tick during an
outage); then it stands by like the others. The Redis is the broker's, or the result backend's
under RabbitMQ; with neither (the embedded default, RabbitMQ with database results) there is
nothing to lock with, and beat says at start that a single instance is not enforced.

Each tick also touches `<schedule file>.alive`, for a health check that does not need Redis.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from celery.beat import PersistentScheduler

from worker.runtime.settings import Settings, get_settings, mask_url

log = logging.getLogger(__name__)

LOCK_KEY = "articles:beat:lock"
# Renew only if the lease is still ours: a plain SET would steal it back from a new holder.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def lock_url(settings: Settings) -> str | None:
    """The Redis the lease lives in, or None when there is none."""
    for url in (settings.celery_broker_url, settings.celery_result_backend):
        if url.startswith(("redis://", "rediss://")):
            return url
    return None


class BeatLease:
    """The lease itself: take, renew and release one Redis key holding our token."""

    def __init__(self, client: redis.Redis, ttl: float) -> None:
        self._client = client
        self._ttl_ms = int(ttl * 1000)
        self.ttl = ttl
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held_until = 0.0  # monotonic time our lease runs out, by our own clock

    @property
    def held(self) -> bool:
        return time.monotonic() < self.held_until

    def refresh(self) -> bool:
        """Take or renew the lease; True while this beat may publish."""
        started = time.monotonic()
        try:
            if self.held:
                ok = bool(self._client.eval(_RENEW, 1, LOCK_KEY, self.token, self._ttl_ms))
                if not ok:
                    log.warning("beat: lost the lock to another beat; standing by")
            else:
                ok = bool(self._client.set(LOCK_KEY, self.token, nx=True, px=self._ttl_ms))
                if ok:
                    log.info("beat: acquired the lock %s: this beat publishes", LOCK_KEY)
        except redis.RedisError as exc:
            # Keep the role until the lease would have run out: nobody else can take it sooner.
            log.warning("beat: cannot reach Redis for the lock (%s)", type(exc).__name__)
            return self.held
        self.held_until = started + self.ttl if ok else 0.0
        return ok

    def holder(self) -> str:
        try:
            value = self._client.get(LOCK_KEY)
        except redis.RedisError:
            return "unknown"
        return value.decode() if isinstance(value, bytes) else str(value)

    def release(self) -> None:
        if self.held:
            try:
                self._client.eval(_RELEASE, 1, LOCK_KEY, self.token)
                log.info("beat: released the lock")
            except redis.RedisError as exc:
                log.warning("beat: could not release the lock (%s)", type(exc).__name__)
        self.held_until = 0.0


class LockedScheduler(PersistentScheduler):
    """Celery's persistent scheduler, publishing only while it holds the beat lease."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lease: BeatLease | None = None
        self._standing_by = False
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        super().setup_schedule()
        settings = get_settings()
        url = lock_url(settings)
        if url is None:
            log.warning("beat: no Redis to hold a lock in: a single beat is NOT enforced")
            return
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._lease = BeatLease(client, settings.beat_lock_ttl)
        log.info("beat: lock %s in %s, TTL %.0fs", LOCK_KEY, mask_url(url), self._lease.ttl)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._touch_alive()
        if self._lease is None:
            return float(super().tick(*args, **kwargs))
        renew_every = self._lease.ttl / 3
        if not self._lease.refresh():
            if not self._standing_by:
                log.info("beat: lock held by %s: standing by", self._lease.holder())
                self._standing_by = True
            return renew_every
        self._standing_by = False
        return min(float(super().tick(*args, **kwargs)), renew_every)

    def close(self) -> None:
        if self._lease is not None:
            self._lease.release()
        super().close()

    def _touch_alive(self) -> None:
        filename = getattr(self, "schedule_filename", None)  # set by PersistentScheduler
        if not filename:
            return
        try:
            Path(f"{filename}.alive").touch()
        except OSError as exc:
            log.debug("beat: cannot touch the alive file: %r", exc)
