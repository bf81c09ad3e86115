"""The client's private Celery app: its configured URLs win over Celery's environment variables,
it reads no configuration module, and publishing does not touch the result backend's shared
pub/sub connection. Nothing here connects to a server."""

from __future__ import annotations

import pytest
from celery.backends.base import DisabledBackend
from celery.backends.redis import RedisBackend

from articles_client.app import build_app
from articles_client.config import ClientConfig

pytestmark = pytest.mark.unit

BROKER = "redis://127.0.0.1:6390/3"
RESULTS = "redis://127.0.0.1:6390/4"
ELSEWHERE = "redis://elsewhere.invalid:6379/0"


@pytest.fixture
def hostile_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Celery prefers each of these to a configured value (celery/app/utils.py).
    for name in (
        "CELERY_BROKER_URL",
        "CELERY_BROKER_READ_URL",
        "CELERY_BROKER_WRITE_URL",
        "CELERY_RESULT_BACKEND",
    ):
        monkeypatch.setenv(name, ELSEWHERE)
    monkeypatch.setenv("CELERY_CONFIG_MODULE", "no_such_module_anywhere")


@pytest.mark.usefixtures("hostile_env")
def test_configured_urls_win_over_the_environment() -> None:
    app = build_app(ClientConfig(broker_url=BROKER, result_backend=RESULTS))
    assert app.connection_for_write().as_uri(include_password=True) == BROKER
    assert app.connection_for_read().as_uri(include_password=True) == BROKER
    assert isinstance(app.backend, RedisBackend)
    assert app.backend.url == RESULTS
    # Reading the configuration did not import CELERY_CONFIG_MODULE (it would fail).
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]


@pytest.mark.usefixtures("hostile_env")
def test_no_result_backend_configured_means_none_not_the_environment_s() -> None:
    app = build_app(ClientConfig(broker_url=BROKER))
    assert isinstance(app.backend, DisabledBackend)


def test_publishing_does_not_subscribe_to_the_result() -> None:
    app = build_app(ClientConfig(broker_url=BROKER, result_backend=RESULTS))
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    backend.on_task_call(None, "some-task-id")
    assert backend.result_consumer.subscribed_to == set()
    assert backend.result_consumer._pubsub is None
