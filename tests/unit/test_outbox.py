"""The outbox's enqueue on its own: validation before anything is written, the transaction rule,
the reserved `options=` keyword, and the DDL command. SQLite stands in for the service's database
here (the row is the same); PostgreSQL and the relay are in the integration tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from articles_client.errors import InvalidPayload, NotInTransaction
from worker import outbox

pytestmark = pytest.mark.unit


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    outbox.metadata.create_all(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def rows(session: Session) -> list[Any]:
    return list(session.execute(select(outbox.outbox_table)).mappings())


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(outbox.outbox_table)) or 0)


def test_commit_writes_one_row_with_the_returned_task_id(session: Session) -> None:
    with session.begin():
        task_id = outbox.enqueue(session, "articles.ingest", title="T", body="One. Two.")
    [row] = rows(session)
    assert row["task_id"] == task_id
    assert row["task_name"] == "articles.ingest"
    assert row["kwargs"] == {"title": "T", "body": "One. Two."}
    assert row["options"] == {}
    assert row["attempts"] == 0


def test_rollback_writes_nothing(session: Session) -> None:
    with session.begin() as transaction:
        outbox.enqueue(session, "articles.process_article", article_id=7)
        assert count(session) == 1
        transaction.rollback()
    assert count(session) == 0


def test_outside_a_transaction_is_refused(session: Session) -> None:
    with pytest.raises(NotInTransaction, match="open transaction"):
        outbox.enqueue(session, "articles.process_article", article_id=7)
    assert count(session) == 0


@pytest.mark.parametrize(
    ("task", "kwargs", "message"),
    [
        ("articles.process_article", {"article_id": "7"}, "article_id: Input should be"),
        ("articles.ingest", {"title": "T"}, "body: Field required"),
        ("articles.ingest", {"title": "T", "body": "B", "color": 1}, "color: Extra inputs"),
        ("articles.run_pipeline", {"batch_size": 0}, "batch_size: Input should be greater"),
        ("my.task", {"when": object()}, "my.task: when: not plain JSON"),
        ("my.task", {"x": float("nan")}, "my.task: x: not plain JSON"),
        ("", {}, "task_name: must be a non-empty string"),
        ("my.task", {"options": {"countdown": -1}}, "options.countdown: Input should be greater"),
        ("my.task", {"options": {"routing": "x"}}, "options.routing: Extra inputs"),
        ("my.task", {"options": ["queue"]}, "options: must be a dict"),
    ],
)
def test_a_bad_job_is_refused_at_once_and_nothing_is_written(
    session: Session, task: str, kwargs: dict[str, Any], message: str
) -> None:
    with session.begin():
        with pytest.raises(InvalidPayload, match=message):
            outbox.enqueue(session, task, **kwargs)
        assert count(session) == 0


def test_options_are_kept_apart_from_the_arguments(session: Session) -> None:
    with session.begin():
        outbox.enqueue(
            session,
            "my.task",
            x=1,
            options={"countdown": 5, "queue": "articles.process", "priority": 3},
        )
    [row] = rows(session)
    assert row["kwargs"] == {"x": 1}
    assert row["options"] == {"countdown": 5.0, "queue": "articles.process", "priority": 3}


def test_the_defaults_of_known_tasks_are_left_to_the_worker(session: Session) -> None:
    with session.begin():
        outbox.enqueue(session, "articles.run_pipeline", batch_size=100, limit=5)
    assert rows(session)[0]["kwargs"] == {"limit": 5}


def test_ddl_command_prints_the_postgresql_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "articles_client.cli", "outbox", "ddl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("CREATE TABLE IF NOT EXISTS articles_outbox (")
    assert "kwargs JSONB NOT NULL" in done.stdout
    assert done.stdout.rstrip().endswith(");")


def test_the_relay_takes_sqlalchemy_urls_and_refuses_anything_but_postgresql() -> None:
    from worker.runtime.outbox_relay import asyncpg_dsn

    assert asyncpg_dsn("postgresql+asyncpg://u:p@h:5432/d") == "postgresql://u:p@h:5432/d"
    assert asyncpg_dsn("postgresql://h/d") == "postgresql://h/d"
    with pytest.raises(ValueError, match="needs a PostgreSQL database"):
        asyncpg_dsn("sqlite+aiosqlite:///var/articles.db")
