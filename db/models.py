"""SQLAlchemy 2 typed models.

Every column a writer might omit has a server-side default, so rows inserted by plain SQL from
another service or a bulk load are valid without this code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ARTICLE_STATUSES: Final = ("pending", "processing", "done", "failed")
# `partial`: the run stopped at its time budget with articles left for the next run.
RUN_STATUSES: Final = ("running", "succeeded", "partial", "failed", "abandoned")

RETRY_PREDICATE: Final = "attempts > 0 AND status IN ('pending', 'processing')"

# Stable constraint names make Alembic's diffs and migrations deterministic.
NAMING: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Article(Base):
    __tablename__ = "articles"
    __table_args__ = (
        CheckConstraint(_in("status", ARTICLE_STATUSES), name="status"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        # The claim query scans pending articles in id order; the reaper scans processing ones.
        Index("ix_articles_status_id", "status", "id"),
        # Articles tried before without a result (a crash, an expired lease): few rows, looked
        # up before every batch, fewest attempts first.
        Index(
            "ix_articles_retry",
            "attempts",
            "id",
            postgresql_where=text(RETRY_PREDICATE),
            sqlite_where=text(RETRY_PREDICATE),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The Celery task id of the ingest that stored the article: a redelivered message (same id)
    # finds it and stores nothing new, even without an external_id.
    ingest_task_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    source_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    word_count: Mapped[int | None] = mapped_column(Integer)
    reading_time_seconds: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str | None] = mapped_column(Text)
    keywords: Mapped[list[str] | None] = mapped_column(JsonDoc)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # How many times processing results were written: the evidence that nothing ran twice.
    times_processed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    # Who holds the claim: a write is applied only while this token still matches.
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP"), onupdate=func.now()
    )


class PipelineRun(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index("ix_pipeline_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'running'"))
    batch_size: Mapped[int] = mapped_column(Integer)
    limit: Mapped[int | None] = mapped_column(Integer)
    claimed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    succeeded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "task_id": self.task_id,
            "status": self.status,
            "batch_size": self.batch_size,
            "limit": self.limit,
            "claimed": self.claimed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "error": self.error,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class TaskRun(Base):
    """A task id whose effects committed: its row means "this task id already ran".

    Inserted at the start of an `@async_task(once=True)` task's transaction, so it becomes
    visible exactly when (and only if) the task's effects commit (docs/design.md section 3).
    `finished_at` is that transaction's time.
    """

    __tablename__ = "task_runs"

    task_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    task_name: Mapped[str] = mapped_column(String(255))
    finished_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )
