"""Settings: a wrong value fails at start with the variable's name; URLs are shown masked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from articles_client.errors import ConfigurationError
from worker.runtime.settings import Settings, get_settings, mask_url

pytestmark = pytest.mark.unit

GOOD = {
    "DATABASE_URL": "postgresql+asyncpg://app:pw@db:5432/articles",
    "CELERY_BROKER_URL": "redis://redis:6379/0",
    "CELERY_RESULT_BACKEND": "redis://redis:6379/1",
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean configuration environment; `get_settings()` re-reads it, and forgets it after."""
    for name in GOOD:
        monkeypatch.setenv(name, GOOD[name])
    monkeypatch.delenv("ASYNC_BRIDGE", raising=False)
    monkeypatch.chdir("/")  # no .env file here
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def load_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    return str(caught.value)


def test_good_environment(environ: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert settings.database_url == GOOD["DATABASE_URL"]
    assert settings.celery_broker_url == GOOD["CELERY_BROKER_URL"]
    assert settings.async_bridge == "nullpool"
    assert settings.task_soft_time_limit < settings.task_time_limit < settings.visibility_timeout
    assert settings.embedded is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://db/articles"),
        ("DATABASE_URL", "postgresql://postgres@db/articles"),  # sync driver: not asyncpg
        ("DATABASE_URL", "articles.db"),
        ("CELERY_BROKER_URL", "http://redis:6379/0"),
        ("CELERY_RESULT_BACKEND", "rpc://"),
        ("DEAD_LETTER_URL", "postgresql://db/articles"),
    ],
)
def test_bad_url_scheme_names_the_variable(
    environ: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    message = load_error(environ, **{variable: value})
    assert message.startswith("invalid configuration: ")
    assert f"{variable}: " in message
    assert "scheme" in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASK_RETRY_DEADLINE_SECONDS", "0"),
        ("MAX_DELIVERIES", "0"),
        ("DEAD_LETTER_MAX_ENTRY_BYTES", "100"),
        ("DEAD_LETTER_RETENTION_SECONDS", "-1"),
        ("TASK_MAX_RETRIES", "many"),
    ],
)
def test_bad_retry_and_dead_letter_settings_name_the_variable(
    environ: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    assert f"{variable}: " in load_error(environ, **{variable: value})


def test_unknown_bridge_names_the_variable(environ: pytest.MonkeyPatch) -> None:
    message = load_error(environ, ASYNC_BRIDGE="gevent")
    assert "ASYNC_BRIDGE: " in message
    assert "'nullpool' or 'loop'" in message


@pytest.mark.parametrize("bridge", ["nullpool", "loop"])
def test_known_bridges(environ: pytest.MonkeyPatch, bridge: str) -> None:
    environ.setenv("ASYNC_BRIDGE", bridge)
    assert get_settings().async_bridge == bridge


def test_soft_limit_must_be_below_the_hard_limit(environ: pytest.MonkeyPatch) -> None:
    message = load_error(environ, TASK_SOFT_TIME_LIMIT="60", TASK_TIME_LIMIT="60")
    assert "TASK_SOFT_TIME_LIMIT must be lower than TASK_TIME_LIMIT" in message


def test_visibility_timeout_must_exceed_the_hard_limit(environ: pytest.MonkeyPatch) -> None:
    message = load_error(environ, TASK_TIME_LIMIT="600", BROKER_VISIBILITY_TIMEOUT="600")
    assert "BROKER_VISIBILITY_TIMEOUT must exceed TASK_TIME_LIMIT" in message


def test_non_numeric_limit_names_the_variable(environ: pytest.MonkeyPatch) -> None:
    assert "TASK_TIME_LIMIT: " in load_error(environ, TASK_TIME_LIMIT="soon")


def test_every_bad_variable_is_reported(environ: pytest.MonkeyPatch) -> None:
    message = load_error(environ, DATABASE_URL="mysql://x/y", ASYNC_BRIDGE="threads")
    assert "DATABASE_URL" in message
    assert "ASYNC_BRIDGE" in message


def test_errors_do_not_print_the_password(environ: pytest.MonkeyPatch) -> None:
    message = load_error(environ, DATABASE_URL="mysql://app:hunter2@db/articles")
    assert "hunter2" not in message


def test_unset_urls_fall_back_to_embedded_files(environ: pytest.MonkeyPatch) -> None:
    for name in GOOD:
        environ.delenv(name)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.celery_broker_url.startswith("sqla+sqlite:///")
    assert settings.celery_result_backend.startswith("db+sqlite:///")
    assert settings.embedded is True


def test_extra_task_modules_are_split() -> None:
    settings = Settings(_env_file=None, EXTRA_TASK_MODULES=" a.b, c ,,")  # type: ignore[call-arg]
    assert settings.task_modules == ["a.b", "c"]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        (
            "postgresql+asyncpg://app:s3cret@db:5432/articles",
            "postgresql+asyncpg://app:***@db:5432/articles",
        ),
        ("amqp://user:p%40ss@rabbit//", "amqp://user:***@rabbit//"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("postgresql+asyncpg://postgres@db/articles", "postgresql+asyncpg://postgres@db/articles"),
        ("sqlite+aiosqlite:///var/articles.db", "sqlite+aiosqlite:///var/articles.db"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cret" not in mask_url(url)


def test_mask_url_of_garbage_does_not_echo_it() -> None:
    assert mask_url("redis://[::1:6379") == "<unparseable URL>"


def test_claim_lease_must_exceed_the_hard_limit(environ: pytest.MonkeyPatch) -> None:
    message = load_error(environ, TASK_TIME_LIMIT="360", CLAIM_LEASE_SECONDS="360")
    assert "CLAIM_LEASE_SECONDS (360) must exceed TASK_TIME_LIMIT (360)" in message


def test_claim_lease_defaults_past_the_hard_limit(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("TASK_SOFT_TIME_LIMIT", "50")
    environ.setenv("TASK_TIME_LIMIT", "100")
    settings = get_settings()
    assert settings.claim_lease_seconds == 160
    assert settings.pipeline_time_budget_seconds == 40


def test_pipeline_budget_must_be_below_the_soft_limit(environ: pytest.MonkeyPatch) -> None:
    message = load_error(environ, TASK_SOFT_TIME_LIMIT="300", PIPELINE_TIME_BUDGET_SECONDS="300")
    assert "PIPELINE_TIME_BUDGET_SECONDS (300) must be below TASK_SOFT_TIME_LIMIT (300)" in message
