"""Dead letters in RabbitMQ itself, for RabbitMQ with database results (docs/design.md section 2).

One durable classic queue, `articles.dead_letters`, holds one JSON entry per message (message id =
task id, per-message TTL = the retention, `x-max-length` a bound). Classic, not quorum: a quorum
queue counts every requeue as a delivery, and reading below requeues.

- `add` only publishes (with publisher confirms), so a worker never waits for anyone; a task id
  dead-lettered again is a second message, merged when read: the latest entry wins and keeps the
  first failure time; `remove` acknowledges every version.
- Every read (`list`, `get`, `count`, `remove`, `trim`) first takes a lock: the exclusive queue
  `articles.dead_letters.lock`, which RabbitMQ lets only one connection declare and drops when that
  connection closes (an operator killed mid-read holds nothing). It then gets every message without
  acknowledging it, acknowledges what is to go (a removed entry, superseded versions, expired
  ones) and closes the channel: RabbitMQ puts the rest back in their places. Without the lock a
  second operator would see an empty queue while the first one holds the messages.

A connection per call: dead letters are rare, and a long-lived connection would be one more thing
to repair after a broker restart.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Collection, Iterator
from typing import Any

from amqp.exceptions import ResourceLocked
from kombu import Connection, Queue

from articles_client.errors import ArticlesError
from worker.runtime.deadletters import entry as entries
from worker.runtime.deadletters.store import Entry

QUEUE = "articles.dead_letters"
LOCK_QUEUE = "articles.dead_letters.lock"
# A bound, not a target: past it RabbitMQ drops the oldest entries (its default overflow).
MAX_ENTRIES = 100_000
QUEUE_ARGUMENTS = {"x-queue-type": "classic", "x-max-length": MAX_ENTRIES}
LOCK_WAIT_SECONDS = 30.0
_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


class StoreBusy(ArticlesError):
    """Another reader held the dead-letter queue's lock for too long; try again."""


class _Held:
    """Every message of the queue, got and not yet acknowledged, merged by task id."""

    def __init__(self, cutoff: float) -> None:
        self.cutoff = cutoff  # entries whose last failure is older are expired
        self.latest: dict[str, Entry] = {}  # task id -> its entry, versions merged
        self.tags: dict[str, list[int]] = {}  # task id -> the delivery tags of its versions
        self.drop: list[int] = []  # tags to acknowledge
        self.expired = 0

    def take(self, tag: int, body: bytes | str) -> None:
        try:
            entry = json.loads(body)
            task_id = str(entry["task_id"])
            last = entries.parse_iso(entry["last_failed_at"])
        except (ValueError, TypeError, KeyError):
            return  # not an entry: left in the queue untouched
        if last < self.cutoff:
            self.drop.append(tag)
            self.expired += 1
            return
        # Older versions stay in the queue: the first failure time they hold is merged on read.
        previous = self.latest.get(task_id)
        if previous is not None and previous["last_failed_at"] > entry["last_failed_at"]:
            previous, entry = entry, previous
        self.latest[task_id] = entries.merge(previous, entry)
        self.tags.setdefault(task_id, []).append(tag)

    def entries(self) -> list[Entry]:
        return sorted(self.latest.values(), key=lambda e: (e["last_failed_at"], e["task_id"]))


class AmqpStore:
    """A `DeadLetterStore` in one RabbitMQ queue (no delivery counter: see hooks.py)."""

    def __init__(self, url: str, *, max_entry_bytes: int, retention_seconds: float) -> None:
        self._url = url
        self.max_entry_bytes = max_entry_bytes
        self.retention_seconds = retention_seconds
        self._queue = Queue(QUEUE, durable=True, queue_arguments=QUEUE_ARGUMENTS)
        self._lock = threading.Lock()  # one call at a time per process (the threads pool)

    def add(self, entry: Entry) -> None:
        text = entries.encode(entry, self.max_entry_bytes)
        with self._lock, self._connection() as conn, conn.Producer() as producer:
            producer.publish(
                text,
                exchange="",
                routing_key=QUEUE,
                declare=[self._queue],
                content_type="application/json",
                content_encoding="utf-8",
                message_id=entry["task_id"],
                delivery_mode=2,
                expiration=self.retention_seconds,
                retry=True,
                retry_policy=_PUBLISH_RETRY,
            )

    def list(self) -> list[Entry]:
        with self._hold() as held:
            return held.entries()

    def get(self, task_id: str) -> Entry | None:
        with self._hold() as held:
            return held.latest.get(task_id)

    def remove(self, task_id: str) -> bool:
        return self.remove_many([task_id]) == 1

    def remove_many(self, task_ids: Collection[str]) -> int:
        # One pass over the queue for all of them: a remove per entry would read the queue
        # once each (`replay --all` of 500 entries measured 388 ms per remove under load).
        with self._hold() as held:
            for task_id in task_ids:
                held.drop.extend(held.tags.pop(task_id, []))
            return sum(held.latest.pop(task_id, None) is not None for task_id in set(task_ids))

    def count(self) -> int:
        with self._hold() as held:
            return len(held.latest)

    def trim(self, now: float) -> int:
        with self._hold(now) as held:
            return held.expired

    def close(self) -> None:
        pass  # nothing stays open between calls

    def _connection(self) -> Connection:
        return Connection(
            self._url,
            connect_timeout=5,
            transport_options={"confirm_publish": True, "max_retries": 3},
        )

    @contextlib.contextmanager
    def _hold(self, now: float | None = None) -> Iterator[_Held]:
        """Lock the queue, get all its messages unacknowledged; afterwards acknowledge
        `held.drop` and give the rest back."""
        cutoff = (time.time() if now is None else now) - self.retention_seconds
        with self._lock, self._connection() as conn:
            _take_lock(conn)
            channel: Any = conn.channel()
            try:
                self._queue(channel).declare()
                held = _Held(cutoff)
                got = 0
                while (message := channel.basic_get(queue=QUEUE, no_ack=False)) is not None:
                    held.take(message.delivery_tag, message.body)
                    got = message.delivery_tag
                yield held
                for tag in held.drop:
                    channel.basic_ack(tag)
                if got:
                    # The rest back in their places, now: closing the channel would requeue them
                    # too, but asynchronously, and the next reader may take the lock first. The
                    # passive declare reaches the queue after the requeue: once it answers, the
                    # queue has them back.
                    channel.basic_recover(requeue=True)
                    channel.queue_declare(queue=QUEUE, passive=True)
            finally:
                with contextlib.suppress(Exception):
                    channel.close()


def _take_lock(conn: Connection) -> None:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        channel: Any = conn.channel()
        try:
            channel.queue_declare(queue=LOCK_QUEUE, exclusive=True, auto_delete=True)
            return  # held until this connection closes
        except ResourceLocked:
            if time.monotonic() > deadline:
                raise StoreBusy(
                    f"{QUEUE}: another reader held the lock for {LOCK_WAIT_SECONDS:.0f}s"
                ) from None
            time.sleep(0.05 + random.random() * 0.1)  # the other reader finishes in milliseconds
