"""The one place configuration comes from: environment variables (and an optional `.env`).

Every other module, `celeryconfig.py` included, reads `get_settings()` instead of `os.environ`,
so a wrong value fails once, at start, with a message that names the variable.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from articles_client.errors import ConfigurationError
from articles_client.urls import BACKEND_SCHEMES, BROKER_SCHEMES, check_scheme, mask_url

__all__ = ["Settings", "get_settings", "mask_url"]

BridgeName = Literal["nullpool", "loop"]

DATABASE_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")
DEAD_LETTER_SCHEMES = ("redis", "rediss")

# The embedded default: with no server configured, everything lives in files under ./var/.
VAR_DIR = Path("var")


class Settings(BaseSettings):
    """Configuration of the worker, beat and the `articles` command (the client has its own)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = Field(default="", validation_alias="DATABASE_URL")
    celery_broker_url: str = Field(default="", validation_alias="CELERY_BROKER_URL")
    celery_result_backend: str = Field(default="", validation_alias="CELERY_RESULT_BACKEND")
    async_bridge: BridgeName = Field(default="nullpool", validation_alias="ASYNC_BRIDGE")
    # DATABASE_URL points at PgBouncer in transaction pooling mode: asyncpg's statement caches
    # go off and prepared statements get unique names (see db/engine.py).
    database_pgbouncer: bool = Field(default=False, validation_alias="DATABASE_PGBOUNCER")
    # Per-session PostgreSQL limits, in seconds (0: none). A statement or lock wait that hits
    # them fails with a TransientError and the task retries, instead of hanging until the hard
    # time limit kills its process. Idle-in-transaction ends sessions a stuck client left open.
    database_statement_timeout: float = Field(
        default=60, ge=0, validation_alias="DATABASE_STATEMENT_TIMEOUT"
    )
    database_lock_timeout: float = Field(default=10, ge=0, validation_alias="DATABASE_LOCK_TIMEOUT")
    database_idle_in_transaction_timeout: float = Field(
        default=60, ge=0, validation_alias="DATABASE_IDLE_IN_TRANSACTION_TIMEOUT"
    )

    # Time limits apply to every task; the pipeline works in batches well inside them.
    task_soft_time_limit: float = Field(default=300, gt=0, validation_alias="TASK_SOFT_TIME_LIMIT")
    task_time_limit: float = Field(default=360, gt=0, validation_alias="TASK_TIME_LIMIT")
    # Redis redelivers an unacknowledged message after this many seconds. It must exceed the
    # longest task (the hard limit), or a still-running task is delivered a second time.
    visibility_timeout: int = Field(default=900, gt=0, validation_alias="BROKER_VISIBILITY_TIMEOUT")
    # How often a worker sweeps Redis's unacked hash for messages of dead workers (kombu >= 5.7).
    unacked_restore_interval: int = Field(
        default=30, gt=0, validation_alias="BROKER_UNACKED_RESTORE_INTERVAL"
    )
    result_expires: int = Field(default=86400, gt=0, validation_alias="RESULT_EXPIRES")
    # Store a STARTED state in the result backend before each task's body (Celery's
    # task_track_started). Off by default, as in Celery: one more result write per task, about
    # 17% of an empty task's throughput, for a state nothing in the project reads.
    task_track_started: bool = Field(default=False, validation_alias="TASK_TRACK_STARTED")
    # Prefork children are replaced after this many tasks, or once their resident memory passes
    # this many KiB after a task (0: never). A replaced child closes its bridge on the way out.
    worker_max_tasks_per_child: int = Field(
        default=0, ge=0, validation_alias="WORKER_MAX_TASKS_PER_CHILD"
    )
    worker_max_memory_per_child: int = Field(
        default=0, ge=0, validation_alias="WORKER_MAX_MEMORY_PER_CHILD"
    )

    # Transient errors retry until this many seconds after the job's first attempt.
    task_retry_deadline_seconds: float = Field(
        default=86400, gt=0, validation_alias="TASK_RETRY_DEADLINE_SECONDS"
    )
    # Only a safety bound: at the default 60 s cap with full jitter a day takes ~2,900 retries.
    task_max_retries: int = Field(default=5000, ge=0, validation_alias="TASK_MAX_RETRIES")
    task_retry_backoff_max: int = Field(default=60, gt=0, validation_alias="TASK_RETRY_BACKOFF_MAX")

    # A job whose delivery killed its worker process this many times is dead-lettered, not run.
    max_deliveries: int = Field(default=3, ge=1, validation_alias="MAX_DELIVERIES")
    # Where dead letters live; empty = beside the queues (docs/design.md section 2).
    dead_letter_url: str = Field(default="", validation_alias="DEAD_LETTER_URL")
    dead_letter_max_entry_bytes: int = Field(
        default=65536, ge=1024, validation_alias="DEAD_LETTER_MAX_ENTRY_BYTES"
    )
    dead_letter_retention_seconds: float = Field(
        default=14 * 86400, gt=0, validation_alias="DEAD_LETTER_RETENTION_SECONDS"
    )

    pipeline_interval_seconds: float = Field(
        default=60, gt=0, validation_alias="PIPELINE_INTERVAL_SECONDS"
    )
    pipeline_batch_size: int = Field(
        default=100, ge=1, le=10_000, validation_alias="PIPELINE_BATCH_SIZE"
    )
    # An article claimed longer ago than this is presumed held by a dead worker. It must exceed
    # TASK_TIME_LIMIT: no task lives past its hard limit, so a live holder is never overtaken.
    # Unset: TASK_TIME_LIMIT + 60 s.
    claim_lease_seconds: float = Field(default=0, ge=0, validation_alias="CLAIM_LEASE_SECONDS")
    # A pipeline run stops claiming after this many seconds and leaves the rest to the next run.
    # It must be below TASK_SOFT_TIME_LIMIT, leaving room for the batch in flight. Unset: 80% of
    # TASK_SOFT_TIME_LIMIT.
    pipeline_time_budget_seconds: float = Field(
        default=0, ge=0, validation_alias="PIPELINE_TIME_BUDGET_SECONDS"
    )
    reaper_interval_seconds: float = Field(
        default=30, gt=0, validation_alias="REAPER_INTERVAL_SECONDS"
    )
    max_attempts: int = Field(default=5, ge=1, validation_alias="MAX_ATTEMPTS")

    # A file the worker touches every 10 s while its consumer runs, for a health check that
    # reads its age instead of broadcasting a ping (empty: none).
    worker_alive_file: str = Field(default="", validation_alias="WORKER_ALIVE_FILE")
    # The beat lease: a beat that dies is replaced by a standby within this many seconds.
    beat_lock_ttl: float = Field(default=30, ge=3, validation_alias="BEAT_LOCK_TTL")

    # Extra task modules to load in the worker, comma separated (your own tasks, test helpers).
    extra_task_modules: str = Field(default="", validation_alias="EXTRA_TASK_MODULES")

    # "json": one JSON object per log line (worker, beat, the `articles` command); "text" is
    # for people reading a terminal.
    log_format: Literal["text", "json"] = Field(default="text", validation_alias="LOG_FORMAT")

    flower_basic_auth: str = Field(default="", validation_alias="FLOWER_BASIC_AUTH")
    # Seconds the bridge waits for a cancelled coroutine to roll back before giving up on it.
    bridge_cancel_timeout: float = Field(default=10, gt=0, validation_alias="BRIDGE_CANCEL_TIMEOUT")

    # The outbox relay: the database whose articles_outbox it drains (default DATABASE_URL),
    # reached directly, never through PgBouncer (LISTEN needs a session of its own).
    outbox_database_url: str = Field(default="", validation_alias="OUTBOX_DATABASE_URL")
    outbox_batch_size: int = Field(
        default=500, ge=1, le=10_000, validation_alias="OUTBOX_BATCH_SIZE"
    )
    # A sweep catches rows whose NOTIFY was missed (the relay was reconnecting, say).
    outbox_sweep_seconds: float = Field(default=5, gt=0, validation_alias="OUTBOX_SWEEP_SECONDS")

    # The variables that were not set, so their embedded default was chosen.
    _defaulted: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("database_url", "outbox_database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        return check_scheme(value, DATABASE_SCHEMES)

    @field_validator("celery_broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        return check_scheme(value, BROKER_SCHEMES)

    @field_validator("celery_result_backend")
    @classmethod
    def _backend_scheme(cls, value: str) -> str:
        return check_scheme(value, BACKEND_SCHEMES)

    @field_validator("dead_letter_url")
    @classmethod
    def _dead_letter_scheme(cls, value: str) -> str:
        return check_scheme(value, DEAD_LETTER_SCHEMES)

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        # Unset URLs fall back to files under ./var/, so a fresh clone runs with no servers.
        self._defaulted = tuple(
            name
            for name, value in (
                ("DATABASE_URL", self.database_url),
                ("CELERY_BROKER_URL", self.celery_broker_url),
                ("CELERY_RESULT_BACKEND", self.celery_result_backend),
            )
            if not value
        )
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{(VAR_DIR / 'articles.db').resolve()}"
        if not self.celery_broker_url:
            self.celery_broker_url = f"sqla+sqlite:///{(VAR_DIR / 'broker.db').resolve()}"
        if not self.celery_result_backend:
            self.celery_result_backend = f"db+sqlite:///{(VAR_DIR / 'results.db').resolve()}"
        if not self.outbox_database_url:
            self.outbox_database_url = self.database_url
        if self.database_pgbouncer and self.embedded:
            raise ValueError("DATABASE_PGBOUNCER needs a postgresql+asyncpg DATABASE_URL")
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("TASK_SOFT_TIME_LIMIT must be lower than TASK_TIME_LIMIT")
        if self.visibility_timeout <= self.task_time_limit:
            raise ValueError(
                "BROKER_VISIBILITY_TIMEOUT must exceed TASK_TIME_LIMIT, or Redis redelivers "
                "tasks that are still running"
            )
        self._check_lease_and_budget()
        return self

    def _check_lease_and_budget(self) -> None:
        if not self.claim_lease_seconds:
            self.claim_lease_seconds = self.task_time_limit + 60
        if self.claim_lease_seconds <= self.task_time_limit:
            raise ValueError(
                f"CLAIM_LEASE_SECONDS ({self.claim_lease_seconds:g}) must exceed TASK_TIME_LIMIT "
                f"({self.task_time_limit:g}), or a batch still running can be claimed again"
            )
        if not self.pipeline_time_budget_seconds:
            self.pipeline_time_budget_seconds = 0.8 * self.task_soft_time_limit
        if self.pipeline_time_budget_seconds >= self.task_soft_time_limit:
            raise ValueError(
                f"PIPELINE_TIME_BUDGET_SECONDS ({self.pipeline_time_budget_seconds:g}) must be "
                f"below TASK_SOFT_TIME_LIMIT ({self.task_soft_time_limit:g}), so a run stops "
                "claiming before the soft limit interrupts a batch"
            )

    @property
    def embedded(self) -> bool:
        """True when the database is the embedded SQLite file (single host, no broadcast)."""
        return self.database_url.startswith("sqlite")

    @property
    def defaulted(self) -> tuple[str, ...]:
        """The URL variables that were not set and fell back to the embedded default."""
        return self._defaulted

    @property
    def task_modules(self) -> list[str]:
        return [m.strip() for m in self.extra_task_modules.split(",") if m.strip()]


@functools.cache
def get_settings() -> Settings:
    """Load settings once; raise `ConfigurationError` naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        names = [str(part).upper() for part in error["loc"]]
        where = ".".join(names) if names else "settings"
        problems.append(f"{where}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)
