"""What every dead-letter store offers (docs/design.md section 2), whatever holds it.

A store keeps one JSON entry per task id, ordered by its last failure, and the delivery counters
that catch a job killing its worker. The Redis and SQLite stores satisfy both protocols; the
RabbitMQ-queue store only `DeadLetterStore` (the quorum queue counts deliveries instead);
`factory.open_store` picks one from the settings.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

Entry = dict[str, Any]


class DeadLetterStore(Protocol):
    """Dead letters by task id. `add` replaces an entry of the same id and trims old ones."""

    def add(self, entry: Entry) -> None: ...

    def list(self) -> list[Entry]:
        """Every entry, oldest last failure first."""
        ...

    def get(self, task_id: str) -> Entry | None: ...

    def remove(self, task_id: str) -> bool:
        """Delete one entry; False if there was none."""
        ...

    def remove_many(self, task_ids: Collection[str]) -> int:
        """Delete these entries in one go; return how many there were."""
        ...

    def count(self) -> int: ...

    def trim(self, now: float) -> int:
        """Delete entries whose last failure is older than the retention; return how many."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class DeliveryCounter(Protocol):
    """Per-task-id delivery counts that outlive the process running the task."""

    def delivered(self, task_id: str) -> int:
        """Count one more delivery of `task_id`; return the count including it."""
        ...

    def deliveries(self, task_id: str) -> int:
        """The current count (0 if none)."""
        ...

    def forget(self, task_id: str) -> None:
        """The task ended normally: drop its count."""
        ...
