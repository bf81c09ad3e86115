"""Which errors are retried and how long the waits are (the deadline itself is tested live)."""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError as SAOperationalError

from articles_client.errors import InvalidPayload, TransientError
from worker.runtime import retry_policy

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "exc",
    [
        TransientError("db down"),
        ConnectionRefusedError(),
        OperationalError("broker down"),
        RedisConnectionError("redis down"),
        SAOperationalError("select 1", {}, Exception("connection refused")),
    ],
)
def test_unreachable_servers_and_transient_errors_are_retried(exc: BaseException) -> None:
    assert retry_policy.is_retryable(exc)


@pytest.mark.parametrize("exc", [InvalidPayload("bad"), ValueError("bug"), KeyError("k")])
def test_bad_input_and_bugs_are_not(exc: BaseException) -> None:
    assert not retry_policy.is_retryable(exc)


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    for retries in range(12):
        waits = [retry_policy.backoff(retries, 60) for _ in range(200)]
        assert all(0 <= w <= min(60, 2**retries) for w in waits)
    late = [retry_policy.backoff(30, 60) for _ in range(500)]
    assert min(late) < 15, "full jitter spreads the whole range"
    assert max(late) > 45


class _Request:
    headers = {retry_policy.FIRST_ATTEMPT_HEADER: 1234.5}


def test_first_attempt_time_comes_from_the_header() -> None:
    assert retry_policy.first_attempt_at(_Request(), default=99.0) == 1234.5
    assert retry_policy.first_attempt_at(object(), default=99.0) == 99.0
