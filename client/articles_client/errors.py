"""One exception hierarchy. Whether Celery retries a task depends only on which branch it is in."""

from __future__ import annotations

__all__ = [
    "ArticleRejected",
    "ArticlesError",
    "BrokerUnavailable",
    "ConfigurationError",
    "InvalidPayload",
    "NestedBridgeCall",
    "NotInTransaction",
    "PoisonJob",
    "TransientError",
    "UnsupportedPool",
]


class ArticlesError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(ArticlesError):
    """A setting is missing or wrong; the message names the variable."""


class InvalidPayload(ArticlesError):
    """A job's arguments break the task contract. Never retried: the same input fails again."""


class ArticleRejected(ArticlesError):
    """An article's content cannot be processed (empty body, say). The article is marked failed."""


class NotInTransaction(ArticlesError):
    """An outbox enqueue was called on a session with no open transaction."""


class TransientError(ArticlesError):
    """A failure that may pass (a dropped connection, a serialization conflict). Retried."""


class BrokerUnavailable(ArticlesError):
    """The producer could not reach the broker within its bounded retry."""


class UnsupportedPool(ArticlesError):
    """The worker was started with a pool the async bridge cannot run under."""


class NestedBridgeCall(ArticlesError):
    """Async code running on the bridge called sync code that crossed the bridge again."""


class PoisonJob(ArticlesError):
    """A job whose delivery killed its worker process too often; dead-lettered instead of run."""
