"""Refuse to start a worker on a Redis that may evict queued jobs.

Under `maxmemory`, any `maxmemory-policy` but `noeviction` lets Redis delete keys to make room:
a queue list, the unacked hash or the dead letters are keys like any other, so jobs would vanish
without a trace. With `noeviction` Redis refuses the write instead, and the producer gets an
error it can see. The check runs once, in the worker's main process, before it consumes.
"""

from __future__ import annotations

import logging

import redis

from articles_client.errors import ConfigurationError
from worker.runtime.settings import mask_url

log = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"


def check_no_eviction(url: str) -> None:
    """Raise `ConfigurationError` if the Redis at `url` may evict keys; warn if it cannot tell."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        policy = str(client.config_get("maxmemory-policy").get("maxmemory-policy", ""))
    except redis.ResponseError as exc:
        # Managed Redis services often disable CONFIG: say so loudly, the operator must check.
        log.warning(
            "CANNOT CHECK maxmemory-policy of %s (%s): make sure it is %s, or Redis may evict "
            "queued jobs under memory pressure",
            mask_url(url),
            exc,
            SAFE_POLICY,
        )
        return
    except redis.RedisError as exc:
        log.warning("could not check maxmemory-policy of %s: %s", mask_url(url), exc)
        return
    finally:
        client.close()
    if policy and policy != SAFE_POLICY:
        raise ConfigurationError(
            f"Redis at {mask_url(url)} has maxmemory-policy {policy}: under memory pressure it "
            f"deletes keys, queued jobs and dead letters included. Set maxmemory-policy "
            f"{SAFE_POLICY} (redis.conf, or CONFIG SET maxmemory-policy {SAFE_POLICY})"
        )
