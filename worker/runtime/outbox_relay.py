"""The outbox relay: publish committed `articles_outbox` rows to the broker, then delete them.

One asyncpg connection, made directly to PostgreSQL (`OUTBOX_DATABASE_URL`, never PgBouncer:
`LISTEN` needs a session of its own), listens on the outbox channel. Each enqueue notifies it at
commit; a sweep every `OUTBOX_SWEEP_SECONDS` catches anything a notification missed.

A batch is one transaction: claim up to `OUTBOX_BATCH_SIZE` rows in id order with
`FOR UPDATE SKIP LOCKED` (so several relays share the table without taking the same row), publish
them with their task ids, delete the published ones, commit. Rows are deleted, not marked: the
table holds only what is still to be sent, so it stays small and `articles status` counts the
backlog directly. A relay killed after publishing and before committing leaves its rows in place
(its locks go with its connection), and they are published again: delivery is at least once.

A broker or database outage never stops the relay: the batch's unpublished rows stay in the
table, the relay waits (backing off to `MAX_PAUSE` seconds) and carries on when the server is
back. `stop()` (SIGTERM) lets the current batch finish and commit, then returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import asyncpg
from kombu.exceptions import OperationalError

from articles_client.app import build_app
from articles_client.config import ClientConfig
from articles_client.errors import ConfigurationError
from articles_client.outbox import CHANNEL, TABLE_NAME
from articles_client.urls import mask_url

log = logging.getLogger("articles.outbox.relay")

# A row that failed to publish this many times on its own (not in a broker outage) is left for
# an operator; `articles status` counts it.
MAX_ROW_ATTEMPTS: Final = 5
MAX_PAUSE: Final = 5.0
# Kombu reconnects once inside a publish (a pooled connection the broker dropped), then gives up
# to the relay's own backoff.
PUBLISH_RETRY: Final = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
BROKER_ERRORS: Final = (OperationalError, ConnectionError, OSError)
# InternalClientError: asyncpg's protocol lost track of the connection's state, seen when
# PostgreSQL shut down as a claim's reply arrived ("cannot switch to state 15; another operation
# is in progress" at COMMIT). The connection is unusable, like a closed one: drop it and reconnect.
DATABASE_ERRORS: Final = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)

CLAIM: Final = f"""
    SELECT id, task_id, task_name, kwargs::text AS kwargs, options::text AS options
    FROM {TABLE_NAME}
    WHERE attempts < $2
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
"""
DELETE: Final = f"DELETE FROM {TABLE_NAME} WHERE id = ANY($1::bigint[])"
FAILED: Final = f"UPDATE {TABLE_NAME} SET attempts = attempts + 1, last_error = $2 WHERE id = $1"


@dataclass(frozen=True, slots=True)
class Message:
    """One outbox row, decoded."""

    row_id: int
    task_id: str
    task_name: str
    kwargs: dict[str, Any]
    options: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    """What became of a batch: rows sent, rows that failed alone, and a broker outage if any."""

    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    broker_error: BaseException | None = None


class Publisher:
    """Publishes messages through the client's own app (`articles_client.app.build_app`).

    So a relayed job is the message the producer would have sent: the contract's routes, its
    version header, JSON. The app has no result backend (the relay reads no results), sends no
    task-sent events and, on RabbitMQ, has publisher confirms on (the client's setting): a
    publish returns only once the broker has the message.
    """

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.app = build_app(ClientConfig(broker_url=broker_url))
        # No task-sent event per message: it more than doubled the relay's cost per message
        # (measured 1.6 vs 0.7 ms CPU). Flower shows an outbox job once a worker receives it.
        self.app.conf.task_send_sent_event = False

    def publish(self, messages: Sequence[Message]) -> Outcome:
        """Publish in order; stop at the first broker failure (the rest wait for the next try)."""
        outcome = Outcome()
        try:
            with self.app.producer_or_acquire() as producer:
                for message in messages:
                    try:
                        self._send(message, producer)
                    except BROKER_ERRORS:
                        raise
                    except Exception as exc:  # this row's fault: record, go on
                        outcome.failed.append((message.row_id, f"{type(exc).__name__}: {exc}"))
                    else:
                        outcome.sent.append(message.row_id)
        except BROKER_ERRORS as exc:
            outcome.broker_error = exc
        return outcome

    def _send(self, message: Message, producer: Any) -> None:
        options = dict(message.options)
        for key in ("eta", "expires"):
            if isinstance(options.get(key), str):
                options[key] = datetime.fromisoformat(options[key])
        self.app.send_task(
            message.task_name,
            kwargs=message.kwargs,
            task_id=message.task_id,
            producer=producer,
            retry=True,
            retry_policy=PUBLISH_RETRY,
            **options,
        )

    def close(self) -> None:
        self.app.close()


class Backoff:
    """Exponential pauses with jitter, from 0.1 s up to `MAX_PAUSE`."""

    def __init__(self) -> None:
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return float(min(MAX_PAUSE, 0.1 * 2 ** (self.failures - 1)) * random.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.failures = 0


class Relay:
    """The relay's loop. `run()` returns after `stop()`, once the current batch has committed."""

    def __init__(
        self,
        *,
        dsn: str,
        publisher: Publisher,
        batch_size: int = 500,
        sweep_seconds: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.publisher = publisher
        self.batch_size = batch_size
        self.sweep_seconds = sweep_seconds
        self.published = 0
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._db_backoff = Backoff()
        self._broker_backoff = Backoff()

    def stop(self) -> None:
        """Ask the relay to finish its current batch and return."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        log.info(
            "outbox relay ready: database %s, broker %s, batch %d, sweep %.1fs",
            mask_url(self.dsn),
            mask_url(self.publisher.broker_url),
            self.batch_size,
            self.sweep_seconds,
        )
        try:
            while not self._stop.is_set():
                await self._session()
        finally:
            self.publisher.close()
            log.info("outbox relay stopped: %d row(s) published", self.published)

    async def _session(self) -> None:
        # One database session: connect, listen, relay until the connection fails or stop().
        try:
            conn: asyncpg.Connection = await asyncpg.connect(
                self.dsn, timeout=10, command_timeout=60, server_settings=_APP_NAME
            )
        except DATABASE_ERRORS as exc:
            await self._database_down(exc)
            return
        try:
            await conn.add_listener(CHANNEL, self._notified)
            conn.add_termination_listener(self._terminated)
            if self._db_backoff.failures:
                log.info("outbox relay: database %s is back", mask_url(self.dsn))
            self._db_backoff.reset()
            await self._serve(conn)
        except DATABASE_ERRORS as exc:
            await self._database_down(exc)
        finally:
            await _close(conn)

    async def _serve(self, conn: asyncpg.Connection) -> None:
        while not self._stop.is_set():
            # Cleared before draining: a commit that lands while we drain wakes the next wait.
            self._wake.clear()
            broker_error = await self._drain(conn)
            if broker_error is not None:
                await self._broker_down(broker_error)
                continue
            if self._broker_backoff.failures:
                log.info("outbox relay: broker %s is back", mask_url(self.publisher.broker_url))
                self._broker_backoff.reset()
            if conn.is_closed():
                raise asyncpg.InterfaceError("the relay's connection closed")
            await self._wait_for_work()

    async def _drain(self, conn: asyncpg.Connection) -> BaseException | None:
        # Full batches mean a backlog: keep going without waiting for a notification.
        while not self._stop.is_set():
            claimed, broker_error = await self._batch(conn)
            if broker_error is not None or claimed < self.batch_size:
                return broker_error
        return None

    async def _batch(self, conn: asyncpg.Connection) -> tuple[int, BaseException | None]:
        async with conn.transaction():
            rows = await conn.fetch(CLAIM, self.batch_size, MAX_ROW_ATTEMPTS)
            if not rows:
                return 0, None
            messages, undecodable = _decode(rows)
            # Published on the loop's own thread, blocking it: the relay has nothing else to do
            # meanwhile (a NOTIFY waits in the socket, a SIGTERM is meant to wait for the batch),
            # and a hand-off to a thread cost two more wake-ups per batch on a busy machine.
            outcome = self.publisher.publish(messages)
            outcome.failed.extend(undecodable)
            if outcome.sent:
                await conn.execute(DELETE, outcome.sent)
            for row_id, error in outcome.failed:
                log.error("outbox row %d could not be published: %s", row_id, error)
                await conn.execute(FAILED, row_id, error[:2000])
        self.published += len(outcome.sent)
        log.debug("outbox relay: published %d of %d claimed row(s)", len(outcome.sent), len(rows))
        return len(rows), outcome.broker_error

    async def _wait_for_work(self) -> None:
        # On timeout, the sweep: look for rows whose notification we missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.sweep_seconds)

    async def _pause(self, seconds: float) -> None:
        # Only stop() ends a pause early; notifications do not (the server is still down).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def _broker_down(self, exc: BaseException) -> None:
        pause = self._broker_backoff.next()
        log.warning(
            "outbox relay: broker %s unreachable (%s: %s); rows wait, retrying in %.1fs",
            mask_url(self.publisher.broker_url),
            type(exc).__name__,
            _one_line(exc),
            pause,
        )
        await self._pause(pause)

    async def _database_down(self, exc: BaseException) -> None:
        pause = self._db_backoff.next()
        log.warning(
            "outbox relay: database %s unavailable (%s: %s); retrying in %.1fs",
            mask_url(self.dsn),
            type(exc).__name__,
            _one_line(exc),
            pause,
        )
        await self._pause(pause)

    def _notified(self, *_args: object) -> None:
        self._wake.set()

    def _terminated(self, *_args: object) -> None:
        # The connection died while idle: wake up and notice it now, not at the next sweep.
        self._wake.set()


_APP_NAME: Final = {"application_name": "articles-outbox-relay"}


def _decode(rows: Sequence[asyncpg.Record]) -> tuple[list[Message], list[tuple[int, str]]]:
    messages: list[Message] = []
    bad: list[tuple[int, str]] = []
    for row in rows:
        try:
            kwargs, options = json.loads(row["kwargs"]), json.loads(row["options"])
            if not isinstance(kwargs, dict) or not isinstance(options, dict):
                raise ValueError("kwargs and options must be JSON objects")
        except ValueError as exc:
            bad.append((row["id"], f"undecodable row: {exc}"))
            continue
        messages.append(Message(row["id"], row["task_id"], row["task_name"], kwargs, options))
    return messages, bad


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=5)
    except (*DATABASE_ERRORS, asyncio.CancelledError):
        conn.terminate()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def asyncpg_dsn(url: str) -> str:
    """`postgresql+asyncpg://...` (SQLAlchemy's form) as the `postgresql://...` asyncpg takes."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in {"postgresql", "postgres"}:
        raise ValueError("the outbox relay needs a PostgreSQL database (LISTEN/NOTIFY)")
    return f"postgresql://{rest}"


def serve(*, database_url: str, broker_url: str, batch_size: int, sweep_seconds: float) -> None:
    """Run a relay until SIGTERM or SIGINT, each of which lets the current batch finish."""
    try:
        dsn = asyncpg_dsn(database_url)
    except ValueError as exc:
        raise ConfigurationError(
            f"OUTBOX_DATABASE_URL (or DATABASE_URL) {mask_url(database_url)}: {exc}"
        ) from None
    relay = Relay(
        dsn=dsn,
        publisher=Publisher(broker_url),
        batch_size=batch_size,
        sweep_seconds=sweep_seconds,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stopping, relay, sig)
        await relay.run()

    asyncio.run(main())


def _stopping(relay: Relay, sig: signal.Signals) -> None:
    log.info("outbox relay: %s received, stopping after the current batch", sig.name)
    relay.stop()
