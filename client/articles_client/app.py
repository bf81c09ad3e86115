"""The client's private Celery app: what it sends is decided here, in code, and nowhere else."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app import backends
from celery.app.amqp import AMQP
from celery.backends.base import Backend
from kombu import Connection

from articles_client import contract
from articles_client.config import ClientConfig


class _StampingAMQP(AMQP):
    """Puts the contract version into every message the client sends, canvas included."""

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(*args, **kwargs)
        message.headers.setdefault(contract.CONTRACT_HEADER, contract.CONTRACT_VERSION)
        return message


class ClientApp(Celery):
    """The client's private Celery app: configured only in code, from a `ClientConfig`.

    Never the "current" app, its loader is named and its configuration is given as its config
    source, so neither a `celeryconfig` module on the caller's path nor the `CELERY_LOADER` or
    `CELERY_CONFIG_MODULE` variables (which Celery's loader otherwise imports) change what it
    sends. Celery
    prefers the `CELERY_BROKER_URL`, `CELERY_BROKER_WRITE_URL` and `CELERY_RESULT_BACKEND`
    environment variables to any configured value (celery/app/utils.py); here the configured
    URLs win, so `configure(...)` means what it says.
    """

    def __init__(self, config: ClientConfig) -> None:
        super().__init__(
            "articles-client",
            set_as_current=False,
            loader="celery.loaders.app:AppLoader",
            amqp=_StampingAMQP,
            config_source=config.celery_settings(),
        )
        self.client_config = config

    def connection_for_write(self, url: str | None = None, **kwargs: Any) -> Connection:
        return super().connection_for_write(url or self.client_config.broker_url, **kwargs)

    def connection_for_read(self, url: str | None = None, **kwargs: Any) -> Connection:
        return super().connection_for_read(url or self.client_config.broker_url, **kwargs)

    def _get_backend(self) -> Backend:
        # (class, url); celery-types declares only the class.
        found: Any = backends.by_url(self.client_config.result_backend or "disabled", self.loader)
        backend_cls, url = found
        backend: Backend = backend_cls(app=self, url=url)
        # Celery's Redis backend subscribes to every task's result channel as it publishes, on
        # one pub/sub connection shared by all threads (celery/celery #4363, #6335). A service
        # publishing from many threads (the async twins run in asyncio's thread pool) must not
        # touch it: the subscription is made by AsyncResult.get(), which subscribes and then
        # reads the stored result, so a result that arrived earlier is not missed.
        backend.on_task_call = _no_subscription  # type: ignore[method-assign]
        return backend


def _no_subscription(producer: Any, task_id: str) -> None:
    return None


def build_app(config: ClientConfig) -> ClientApp:
    """A new client app for `config`."""
    return ClientApp(config)
