"""What the client needs to publish, and nothing else.

A service configures the client with two environment variables, `CELERY_BROKER_URL` (required)
and `CELERY_RESULT_BACKEND` (optional: without it results cannot be read), or in code with
`articles_client.configure(...)`. The client reads no `.env` file, no `celeryconfig` module and no
database setting, and it never falls back to a local file: a job published where no worker reads
would be lost without a word.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from articles_client import contract, queues
from articles_client.errors import ConfigurationError
from articles_client.urls import BACKEND_SCHEMES, BROKER_SCHEMES, check_scheme

BROKER_ENV: Final = "CELERY_BROKER_URL"
BACKEND_ENV: Final = "CELERY_RESULT_BACKEND"

# The wire format, shared with the worker's celeryconfig: JSON only, so no sender can make a
# worker unpickle code, and no worker can hand a client a pickle.
WIRE_SETTINGS: Final[Mapping[str, Any]] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    "task_default_queue": contract.QUEUE,
    "task_create_missing_queues": True,
    # No "task-sent" event per publish: measured side by side, it doubled a publish (medians 2.0
    # vs 4.0 ms, 12.5 vs 22 ms under heavier load; `python -m bench.sent_events`), and a producer
    # cannot be told that someone watches (control broadcasts reach workers only). Flower lists a
    # job from the moment a worker receives it; set this to True on `client_app().conf` to see
    # queued jobs too.
    "task_send_sent_event": False,
}

# Redis connections fail fast and the result backend retries briefly (about 3 s in all), so a
# caller facing a dead Redis gets an error promptly instead of hanging.
REDIS_CLIENT_SETTINGS: Final[Mapping[str, Any]] = {
    "redis_socket_timeout": 10,
    "redis_socket_connect_timeout": 5,
    "redis_backend_health_check_interval": 10,
    "result_backend_always_retry": True,
    "result_backend_max_retries": 10,
    # 10 ms doubling to at most 1 s between result-store retries, not the 10 s default steps.
    "result_backend_max_sleep_between_retries_ms": 1000,
}

# Publisher confirms: a publish returns only once RabbitMQ has taken the message.
AMQP_PUBLISH_OPTIONS: Final[Mapping[str, Any]] = {"confirm_publish": True}

RESULT_RETRY_POLICY: Final[Mapping[str, Any]] = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}


@dataclass(frozen=True)
class ClientConfig:
    """Where jobs are published and where their results are read."""

    broker_url: str
    result_backend: str | None = None

    def __post_init__(self) -> None:
        if not self.broker_url:
            raise ConfigurationError(
                f"{BROKER_ENV} is not set: the client needs the URL of the broker your workers "
                "consume from (for example redis://broker-host:6379/0); it never falls back to "
                "a local file"
            )
        _check(BROKER_ENV, self.broker_url, BROKER_SCHEMES)
        if self.result_backend:
            _check(BACKEND_ENV, self.result_backend, BACKEND_SCHEMES)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientConfig:
        """Read `CELERY_BROKER_URL` and `CELERY_RESULT_BACKEND`; nothing else."""
        env = os.environ if environ is None else environ
        return cls(
            broker_url=env.get(BROKER_ENV, "").strip(),
            result_backend=env.get(BACKEND_ENV, "").strip() or None,
        )

    def celery_settings(self) -> dict[str, Any]:
        """The Celery settings of the client's private app."""
        return {
            # Celery prefers the CELERY_BROKER_URL variable to a configured broker_url but not to
            # the *_read/_write URLs; `ClientApp` also passes this URL to every connection.
            "broker_url": self.broker_url,
            "broker_read_url": self.broker_url,
            "broker_write_url": self.broker_url,
            "result_backend": self.result_backend,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": self._transport_options(),
            "result_backend_transport_options": {"retry_policy": dict(RESULT_RETRY_POLICY)},
            "task_queues": queues.task_queues(self.broker_url),
            "task_routes": queues.task_routes(),
            **WIRE_SETTINGS,
            **REDIS_CLIENT_SETTINGS,
        }

    def _transport_options(self) -> dict[str, Any]:
        # Redis sockets time out rather than hang; other transports refuse these options (the
        # SQLAlchemy one hands every option to create_engine()).
        if self.broker_url.startswith(("redis://", "rediss://")):
            return {"socket_timeout": 10, "socket_connect_timeout": 5}
        if queues.is_amqp(self.broker_url):
            return dict(AMQP_PUBLISH_OPTIONS)
        return {}


def _check(variable: str, url: str, schemes: tuple[str, ...]) -> None:
    try:
        check_scheme(url, schemes)
    except ValueError as exc:
        raise ConfigurationError(f"invalid configuration: {variable}: {exc}") from None
