"""Which failures are retried, how long to wait, and until when (docs/design.md section 4).

Transient errors retry with capped exponential backoff and full jitter until
`TASK_RETRY_DEADLINE_SECONDS` after the job's first attempt. The first attempt's time travels in
a message header, so every retry (a new message with the same task id) measures from it.
"""

from __future__ import annotations

import random
from typing import Any

from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from articles_client.errors import InvalidPayload, TransientError
from db.errors import is_transient

FIRST_ATTEMPT_HEADER = "articles_first_attempt_at"
# Set on a request when a retry was refused, so the dead letter says why.
GAVE_UP_ATTR = "articles_gave_up"


def is_retryable(exc: BaseException) -> bool:
    """True for failures that may pass: `TransientError`, and a database or broker that could
    not be reached. Bad input never is."""
    if isinstance(exc, InvalidPayload):
        return False
    if isinstance(exc, (TransientError, BrokerOperationalError, RedisConnectionError)):
        return True
    return isinstance(exc, RedisTimeoutError) or is_transient(exc)


def backoff(retries: int, cap: float) -> float:
    """Seconds before retry number `retries + 1`: uniform in [0, min(cap, 2**retries)]."""
    return random.uniform(0, min(cap, 2.0 ** min(retries, 32)))


def first_attempt_at(request: Any, default: float) -> float:
    """The first attempt's Unix time from the request's header, or `default` on that attempt."""
    headers = getattr(request, "headers", None) or {}
    value = headers.get(FIRST_ATTEMPT_HEADER, getattr(request, FIRST_ATTEMPT_HEADER, None))
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default
