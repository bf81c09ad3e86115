"""Dead letters of the embedded default, in `var/dead-letters.db` (stdlib sqlite3).

The worker's processes and the `articles` command share the file: WAL lets readers run beside
the one writer, and a busy timeout waits out the writer's short transactions.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection
from pathlib import Path

from worker.runtime.deadletters import entry as entries
from worker.runtime.deadletters.store import Entry

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS dead_letters ("
    " task_id TEXT PRIMARY KEY, last_failed REAL NOT NULL, entry TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS dead_letters_last_failed ON dead_letters (last_failed)",
    "CREATE TABLE IF NOT EXISTS deliveries ("
    " task_id TEXT PRIMARY KEY, count INTEGER NOT NULL, expires REAL NOT NULL)",
)


class SqliteStore:
    """A `DeadLetterStore` and `DeliveryCounter` in one SQLite file."""

    def __init__(
        self, path: Path, *, max_entry_bytes: int, retention_seconds: float, counter_ttl: int
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode; each write below is one statement or an explicit transaction.
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self.max_entry_bytes = max_entry_bytes
        self.retention_seconds = retention_seconds
        self.counter_ttl = counter_ttl

    def add(self, entry: Entry) -> None:
        merged = entries.merge(self.get(entry["task_id"]), entry)
        self._db.execute(
            "INSERT INTO dead_letters (task_id, last_failed, entry) VALUES (?, ?, ?) "
            "ON CONFLICT (task_id) DO UPDATE SET last_failed = excluded.last_failed, "
            "entry = excluded.entry",
            (
                merged["task_id"],
                entries.parse_iso(merged["last_failed_at"]),
                entries.encode(merged, self.max_entry_bytes),
            ),
        )
        self.trim(time.time())

    def list(self) -> list[Entry]:
        rows = self._db.execute("SELECT entry FROM dead_letters ORDER BY last_failed, task_id")
        return [json.loads(row[0]) for row in rows]

    def get(self, task_id: str) -> Entry | None:
        row = self._db.execute(
            "SELECT entry FROM dead_letters WHERE task_id = ?", (task_id,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def remove(self, task_id: str) -> bool:
        cursor = self._db.execute("DELETE FROM dead_letters WHERE task_id = ?", (task_id,))
        return cursor.rowcount > 0

    def remove_many(self, task_ids: Collection[str]) -> int:
        return sum(self.remove(task_id) for task_id in task_ids)

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def trim(self, now: float) -> int:
        cursor = self._db.execute(
            "DELETE FROM dead_letters WHERE last_failed < ?", (now - self.retention_seconds,)
        )
        self._db.execute("DELETE FROM deliveries WHERE expires < ?", (now,))
        return cursor.rowcount

    def delivered(self, task_id: str) -> int:
        now = time.time()
        row = self._db.execute(
            "INSERT INTO deliveries (task_id, count, expires) VALUES (?, 1, ?) "
            "ON CONFLICT (task_id) DO UPDATE SET "
            " count = CASE WHEN deliveries.expires < ? THEN 1 ELSE deliveries.count + 1 END, "
            " expires = excluded.expires "
            "RETURNING count",
            (task_id, now + self.counter_ttl, now),
        ).fetchone()
        return int(row[0])

    def deliveries(self, task_id: str) -> int:
        row = self._db.execute(
            "SELECT count FROM deliveries WHERE task_id = ? AND expires >= ?",
            (task_id, time.time()),
        ).fetchone()
        return int(row[0]) if row else 0

    def forget(self, task_id: str) -> None:
        self._db.execute("DELETE FROM deliveries WHERE task_id = ?", (task_id,))

    def close(self) -> None:
        self._db.close()
