"""Dead-letter entries: what they hold, their times in ISO 8601 UTC, and their size cap.

An entry is a JSON object: `task_id`, `task`, `args`, `kwargs` (or `raw_body`, base64, when the
message could not be decoded), `error` {`type`, `message`}, `deliveries`, `first_failed_at`,
`last_failed_at`, `queue`, plus `reason` (why it ended here), `retries`, `headers` (the message's
own headers, for replay) and `truncated` (long strings were cut to fit the cap; such an entry
cannot be replayed faithfully).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

from worker.runtime.deadletters.store import Entry

ERROR_MESSAGE_CHARS = 2000
# Strings are cut to this many characters first, then halved until the entry fits its cap.
_FIRST_CUT = 4096
_MARK = "…[truncated]"
# RabbitMQ's native delayed delivery (a retry with a countdown) prefixes the routing key with
# 28 bits, "0.1.…", kept in the delivery's routing key (kombu's native_delayed_delivery).
_DELAY_PREFIX = re.compile(r"^(?:[01]\.){28}")


def queue_of(routing_key: str | None) -> str | None:
    """The queue a delivery's routing key names, without a delayed-delivery prefix.

    A replay sends the job back to this queue: with the prefix it went to a queue of that long
    name, which nothing consumes (the RabbitMQ reliability pass found it)."""
    if not routing_key:
        return None
    return _DELAY_PREFIX.sub("", routing_key, count=1) or None


def iso(timestamp: float) -> str:
    """A Unix time as ISO 8601 UTC with a `Z`, to the millisecond."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def make_entry(
    *,
    task_id: str,
    task: str | None,
    error_type: str,
    error_message: str,
    reason: str,
    now: float,
    args: Any = None,
    kwargs: Any = None,
    raw_body: bytes | None = None,
    deliveries: int = 1,
    first_failed_at: float | None = None,
    queue: str | None = None,
    headers: dict[str, Any] | None = None,
    retries: int = 0,
) -> Entry:
    """Build an entry; `raw_body` replaces args and kwargs when they could not be decoded."""
    entry: Entry = {
        "task_id": task_id,
        "task": task,
        "args": _jsonable(list(args)) if raw_body is None and args is not None else None,
        "kwargs": _jsonable(dict(kwargs)) if raw_body is None and kwargs is not None else None,
        "error": {"type": error_type, "message": error_message[:ERROR_MESSAGE_CHARS]},
        "reason": reason,
        "deliveries": deliveries,
        "retries": retries,
        "first_failed_at": iso(first_failed_at if first_failed_at is not None else now),
        "last_failed_at": iso(now),
        "queue": queue_of(queue),
        "headers": _jsonable(headers or {}),
        "truncated": False,
    }
    if raw_body is not None:
        entry["raw_body"] = base64.b64encode(raw_body).decode("ascii")
    return entry


def merge(previous: Entry | None, entry: Entry) -> Entry:
    """A task id dead-lettered again (after a replay, say) keeps its first failure time."""
    if previous and previous.get("first_failed_at"):
        first = min(previous["first_failed_at"], entry["first_failed_at"])
        entry = {**entry, "first_failed_at": first}
    return entry


def encode(entry: Entry, max_bytes: int) -> str:
    """The entry as JSON of at most `max_bytes`, cutting its longest strings if needed."""
    text = _dumps(entry)
    limit = _FIRST_CUT
    while len(text.encode()) > max_bytes and limit >= 16:
        entry = {**truncate_strings(entry, limit, keep=("task_id", "task")), "truncated": True}
        text = _dumps(entry)
        limit //= 2
    if len(text.encode()) > max_bytes:
        # Still too big (a huge number of small values): keep only what identifies the job.
        keep = ("task_id", "task", "error", "reason", "deliveries", "retries", "first_failed_at",
                "last_failed_at", "queue")  # fmt: skip
        text = _dumps({**{k: entry.get(k) for k in keep}, "args": None, "kwargs": None,
                       "headers": {}, "truncated": True})  # fmt: skip
    return text


def truncate_strings(value: Any, limit: int, keep: tuple[str, ...] = ()) -> Any:
    """`value` with every string longer than `limit` cut (keys in `keep` at the top untouched)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + _MARK
    if isinstance(value, list):
        return [truncate_strings(item, limit) for item in value]
    if isinstance(value, dict):
        return {k: v if k in keep else truncate_strings(v, limit) for k, v in value.items()}
    return value


def _dumps(entry: Entry) -> str:
    return json.dumps(entry, separators=(",", ":"), default=repr)


def _jsonable(value: Any) -> Any:
    # Arguments arrived as JSON, but a hard-time-limit failure reports them from the parent,
    # and headers may hold bytes: anything JSON cannot hold becomes its repr.
    return json.loads(json.dumps(value, default=repr))
