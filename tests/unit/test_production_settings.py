"""Settings for running in production (issue 16): PgBouncer, database limits, recycling, logs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.errors import ConfigurationError
from worker.runtime.settings import get_settings

pytestmark = pytest.mark.unit

PG = "postgresql+asyncpg://app:pw@db:5432/articles"


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("DATABASE_URL", PG)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://redis:6379/1")
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


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("false", False)])
def test_pgbouncer_flag(environ: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    environ.setenv("DATABASE_PGBOUNCER", value)
    assert get_settings().database_pgbouncer is expected


def test_pgbouncer_flag_names_the_variable(environ: pytest.MonkeyPatch) -> None:
    assert "DATABASE_PGBOUNCER: " in load_error(environ, DATABASE_PGBOUNCER="maybe")


def test_pgbouncer_flag_needs_postgresql(environ: pytest.MonkeyPatch) -> None:
    message = load_error(
        environ, DATABASE_URL="sqlite+aiosqlite:///x.db", DATABASE_PGBOUNCER="true"
    )
    assert "DATABASE_PGBOUNCER needs a postgresql+asyncpg DATABASE_URL" in message


@pytest.mark.parametrize("variable", ["WORKER_MAX_TASKS_PER_CHILD", "WORKER_MAX_MEMORY_PER_CHILD"])
def test_recycling_limits_name_the_variable(environ: pytest.MonkeyPatch, variable: str) -> None:
    assert f"{variable}: " in load_error(environ, **{variable: "-1"})


@pytest.mark.parametrize(
    "variable",
    ["DATABASE_STATEMENT_TIMEOUT", "DATABASE_LOCK_TIMEOUT", "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT"],
)
def test_database_limits_name_the_variable(environ: pytest.MonkeyPatch, variable: str) -> None:
    assert f"{variable}: " in load_error(environ, **{variable: "soon"})
