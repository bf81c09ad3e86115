"""Reliability fixtures: private PostgreSQL, Redis and RabbitMQ servers, subprocess workers, fast
timings.

One private PostgreSQL cluster serves the session (each test gets a fresh database copied from a
migrated template); each test gets its own private `redis-server`. With `TEST_TRANSPORT=amqp` the
broker is a private RabbitMQ node started once for the session, each test in a vhost of its own,
and the test's private Redis holds the results only. Tests may stop, restart or kill them freely:
the shared servers are never touched.

A test about one broker's own machinery is marked `redis_only` or `amqp_only` with the reason;
every other test runs in both passes of `make test`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from celery import Celery
from kombu import Connection
from kombu.exceptions import ChannelError

from articles_client import contract
from tests.support import processes
from tests.support.env import BROKER, service_env
from tests.support.rabbitmq import PrivateRabbit, private_rabbit
from tests.support.servers import PrivatePostgres, PrivateRedis, private_postgres, private_redis

TEMPLATE_DB = "articles_template"
ON_AMQP = BROKER == "amqp"


def redis_only(reason: str) -> pytest.MarkDecorator:
    """Skip in the RabbitMQ pass: the test is about Redis's own machinery (`reason`)."""
    return pytest.mark.skipif(ON_AMQP, reason=f"Redis only: {reason}")


def amqp_only(reason: str) -> pytest.MarkDecorator:
    """Skip in the Redis pass: the test is about RabbitMQ's own machinery (`reason`)."""
    return pytest.mark.skipif(not ON_AMQP, reason=f"RabbitMQ only: {reason}")


# A role that must log in with its password (scram-sha-256): lets a test look for it in output.
APP_USER = "app"
APP_PASSWORD = "pg-Secret-8c1f"

# Short leases and timeouts so a lost worker is recovered in seconds, not minutes. The
# production defaults and their reasons are in worker/settings.py and the README.
FAST_RECOVERY = {
    "TASK_SOFT_TIME_LIMIT": "6",
    "TASK_TIME_LIMIT": "8",
    "BROKER_VISIBILITY_TIMEOUT": "10",
    "BROKER_UNACKED_RESTORE_INTERVAL": "1",
    "CLAIM_LEASE_SECONDS": "9",
    "REAPER_INTERVAL_SECONDS": "1",
    "PIPELINE_INTERVAL_SECONDS": "3600",
    "TASK_RETRY_BACKOFF_MAX": "4",
    "MAX_ATTEMPTS": "5",
}

BODY = (
    "Reliable workers process every article exactly once. Crashes, outages and bad input "
    "must never lose a job or run it twice. Articles carry words for the keyword counter."
)


def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on a fresh connection (plain asyncpg URL)."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """A private cluster with a migrated template database and a password-protected role."""
    from db.migrate import upgrade

    with private_postgres() as pg:
        admin = pg.admin_url()
        sql(admin, f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
        sql(admin, f"CREATE DATABASE {TEMPLATE_DB}")
        upgrade(pg.url(TEMPLATE_DB))
        template = admin.rsplit("/", 1)[0] + f"/{TEMPLATE_DB}"
        sql(template, f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {APP_USER}")
        sql(template, f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {APP_USER}")
        yield pg


class RowLock:
    """One article's row lock, held by a transaction on a connection of its own.

    A task that claims the article blocks on it, so a test knows the task is inside its
    transaction when it kills, or lets the soft limit hit, the process running it.
    """

    def __init__(self, url: str, article_id: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn = self._loop.run_until_complete(asyncpg.connect(url))
        self._tx: Any = self._conn.transaction()
        self._loop.run_until_complete(self._tx.start())
        self._loop.run_until_complete(
            self._conn.execute("SELECT 1 FROM articles WHERE id = $1 FOR UPDATE", article_id)
        )

    def release(self) -> None:
        if self._tx is not None:
            self._loop.run_until_complete(self._tx.rollback())
            self._tx = None

    def close(self) -> None:
        self.release()
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()


@dataclass
class Stack:
    """One test's servers: a fresh database on the private cluster, a private Redis, and in the
    RabbitMQ pass a vhost on the session's private RabbitMQ node (then the broker)."""

    pg: PrivatePostgres
    redis: PrivateRedis
    database: str
    log_dir: Path
    rabbit: PrivateRabbit | None = None
    vhost: str = ""
    # One connection for `queued`, polled every few ms by some tests: a connection per call
    # doubled the outbox relay test's time on RabbitMQ.
    _amqp: Connection | None = field(default=None, repr=False)

    @property
    def broker_url(self) -> str:
        return self.rabbit.url(self.vhost) if self.rabbit is not None else self.redis.url()

    def stop_broker(self) -> None:
        self.close()
        if self.rabbit is not None:
            self.rabbit.stop()
        else:
            self.redis.stop()

    def start_broker(self) -> None:
        if self.rabbit is not None:
            self.rabbit.start()
        else:
            self.redis.start()

    def queued(self, *queues: str) -> int:
        """Messages waiting (ready, not delivered) in `queues` (default: every work queue)."""
        names = queues or contract.WORK_QUEUES
        if self.rabbit is None:
            with self.redis.client() as client:
                return sum(int(client.llen(name)) for name in names)
        if self._amqp is None:
            self._amqp = Connection(self.broker_url)
        total = 0
        try:
            for name in names:
                channel = self._amqp.channel()
                try:
                    total += channel.queue_declare(name, passive=True).message_count
                except ChannelError:
                    pass  # not declared yet: nothing waits in it
                finally:
                    with contextlib.suppress(ChannelError):
                        channel.close()
        except Exception:
            self.close()  # a broken connection: the next call opens a new one
            raise
        return total

    def close(self) -> None:
        """Close what the stack holds open (its RabbitMQ connection)."""
        if self._amqp is not None:
            with contextlib.suppress(Exception):
                self._amqp.release()
            self._amqp = None

    def clear_queues(self) -> None:
        """Drop every waiting message of the work queues."""
        if self.rabbit is None:
            with self.redis.client() as client:
                client.delete(*contract.WORK_QUEUES)
            return
        from tests.support import rabbitmq

        rabbitmq.purge(self.broker_url)

    def queued_task_ids(self, queue: str) -> list[str]:
        """The task id of every message waiting in `queue`, each checked to be JSON."""
        if self.rabbit is None:
            from tests.support.outbox import queued_task_ids

            with self.redis.client() as client:
                return queued_task_ids(client, queue)
        return _amqp_task_ids(self.broker_url, queue)

    @property
    def database_url(self) -> str:
        return self.pg.url(self.database)

    @property
    def plain_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg.port}/{self.database}"

    @contextlib.contextmanager
    def row_lock(self, article_id: int) -> Iterator[RowLock]:
        lock = RowLock(self.plain_url, article_id)
        try:
            yield lock
        finally:
            lock.close()

    def env(self, **overrides: str) -> dict[str, str]:
        base = {
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": self.redis.url(),
            **FAST_RECOVERY,
        }
        return service_env(**{**base, **overrides})

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return sql(self.plain_url, query, *args)

    def add_articles(self, count: int, body: str = BODY) -> None:
        self.sql(
            "INSERT INTO articles (title, body) SELECT 'article ' || g, $1 "
            "FROM generate_series(1, $2) AS g",
            body,
            count,
        )

    def counts(self) -> dict[str, int]:
        rows = self.sql("SELECT status, count(*) AS n FROM articles GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    def times_processed(self) -> dict[int, int]:
        """{times_processed: number of articles}: {1: N} means each was written exactly once."""
        rows = self.sql("SELECT times_processed AS t, count(*) AS n FROM articles GROUP BY 1")
        return {r["t"]: r["n"] for r in rows}

    def wait_for(
        self,
        check: Callable[[], bool],
        timeout: float,
        what: str,
        interval: float = 0.1,
        detail: Callable[[], str] | None = None,
    ) -> float:
        """Poll `check` until true; return the seconds it took. Fails with `what` on timeout
        (and what `detail` says, to diagnose it)."""
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > timeout:
                extra = f"\n{detail()}" if detail else ""
                raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
            time.sleep(interval)
        return time.monotonic() - start

    def all_done(self, total: int) -> Callable[[], bool]:
        return lambda: self.counts().get("done", 0) == total

    @contextlib.contextmanager
    def worker(self, env: dict[str, str] | None = None, **kwargs: Any) -> Iterator[processes.Proc]:
        with processes.celery_worker(env or self.env(), self.log_dir, **kwargs) as proc:
            yield proc

    @contextlib.contextmanager
    def beat(self, env: dict[str, str] | None = None) -> Iterator[processes.Proc]:
        schedule = self.log_dir / f"beat-{uuid.uuid4().hex[:6]}.db"
        with processes.celery_beat(env or self.env(), self.log_dir, schedule) as proc:
            yield proc

    @contextlib.contextmanager
    def client(self) -> Iterator[Celery]:
        """A producer-side Celery app on this test's broker (the project's configuration).

        Celery reads CELERY_BROKER_URL and CELERY_RESULT_BACKEND from the environment before its
        own configuration, and the test session's environment names the shared servers: point
        them at the private ones while the app is in use.
        """
        urls = {"CELERY_BROKER_URL": self.broker_url, "CELERY_RESULT_BACKEND": self.redis.url()}
        saved = {key: os.environ.get(key) for key in urls}
        os.environ.update(urls)
        app = Celery("reliability-client")
        # Declarations and transport options follow the session's broker, of the same kind.
        app.config_from_object("celeryconfig")
        app.conf.update(
            broker_url=self.broker_url,
            broker_write_url=self.broker_url,
            result_backend=self.redis.url(),
        )
        try:
            yield app
        finally:
            app.close()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _amqp_task_ids(url: str, queue: str) -> list[str]:
    # Fetched unacknowledged, then given back by closing the channel: the queue is unchanged.
    ids: list[str] = []
    with Connection(url) as conn:
        channel = conn.channel()
        try:
            while (message := channel.basic_get(queue, no_ack=False)) is not None:
                ids.append(message.headers["id"])
                assert isinstance(json.loads(message.body), list)  # JSON, never pickle
        except ChannelError:
            pass  # not declared yet: empty
        finally:
            with contextlib.suppress(Exception):
                channel.close()
    return ids


def _new_database(pg: PrivatePostgres) -> str:
    name = f"rel_{uuid.uuid4().hex[:10]}"
    sql(pg.admin_url(), f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return name


@pytest.fixture(scope="session")
def session_rabbit() -> Iterator[PrivateRabbit | None]:
    """The RabbitMQ pass's private node (None in the Redis pass); tests may stop and start it."""
    if not ON_AMQP:
        yield None
        return
    with private_rabbit() as node:
        yield node


@contextlib.contextmanager
def _vhost(rabbit: PrivateRabbit | None) -> Iterator[str]:
    if rabbit is None:
        yield ""
        return
    if rabbit.ctl("status", timeout=30).returncode != 0:
        rabbit.start()  # a test that failed while the node was stopped left it down
    vhost = f"rel-{uuid.uuid4().hex[:8]}"
    for args in (("add_vhost", vhost), ("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")):
        done = rabbit.ctl(*args)
        assert done.returncode == 0, done.stderr
    try:
        yield vhost
    finally:
        rabbit.ctl("delete_vhost", vhost)


@pytest.fixture
def stack(
    private_pg: PrivatePostgres, session_rabbit: PrivateRabbit | None, tmp_path: Path
) -> Iterator[Stack]:
    """Fresh database + private Redis (+ RabbitMQ vhost) for one test; all gone afterwards."""
    name = _new_database(private_pg)
    with private_redis(appendonly=True) as broker, _vhost(session_rabbit) as vhost:
        made = Stack(
            pg=private_pg,
            redis=broker,
            database=name,
            log_dir=tmp_path / "logs",
            rabbit=session_rabbit,
            vhost=vhost,
        )
        yield made
        made.close()
    with contextlib.suppress(Exception):
        sql(private_pg.admin_url(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def module_stack(
    private_pg: PrivatePostgres,
    session_rabbit: PrivateRabbit | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Like `stack`, shared by a module (one long-lived worker for many examples)."""
    name = _new_database(private_pg)
    with private_redis() as broker, _vhost(session_rabbit) as vhost:
        yield Stack(
            pg=private_pg,
            redis=broker,
            database=name,
            log_dir=tmp_path_factory.mktemp("logs"),
            rabbit=session_rabbit,
            vhost=vhost,
        )
    with contextlib.suppress(Exception):
        sql(private_pg.admin_url(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
