"""`articles dead-letters list | replay | purge`: look at, resend or drop the jobs that died.

The store is the one the worker writes to (docs/design.md section 2), so these commands work
while PostgreSQL is down.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from articles_client.errors import ArticlesError
from worker.runtime.deadletters import entry as entries
from worker.runtime.deadletters.factory import open_store
from worker.runtime.deadletters.store import DeadLetterStore, Entry
from worker.runtime.settings import Settings

# Strings longer than this are cut in listings (the store keeps them whole, up to its cap).
LIST_CHARS = 200
_WHOLE = ("task_id", "task", "first_failed_at", "last_failed_at", "queue")
# Replayed entries are removed this many at a time (a crash mid-way leaves at most this many to
# replay twice, which the same task id makes harmless).
_REMOVE_BATCH = 100

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class UnknownDeadLetter(ArticlesError):
    """No dead letter has this task id."""


def register(commands: Any) -> None:
    """Add `dead-letters` and its actions to the `articles` parser."""
    parser = commands.add_parser("dead-letters", help="jobs that failed for good: list, replay")
    actions = parser.add_subparsers(dest="dead_letters_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every dead letter, oldest failure first")
    listing.add_argument("--json", action="store_true", help="a bare JSON list")
    listing.set_defaults(handler=cmd_list)
    for name, handler, text in (
        ("replay", cmd_replay, "send jobs back to the broker (same task id), then drop them"),
        ("purge", cmd_purge, "delete dead letters for good"),
    ):
        action = actions.add_parser(name, help=text)
        which = action.add_mutually_exclusive_group(required=True)
        which.add_argument("task_ids", nargs="*", default=[], metavar="TASK_ID")
        which.add_argument("--all", action="store_true", help="every dead letter")
        action.set_defaults(handler=handler)


def count(settings: Settings) -> int:
    """How many dead letters there are (for `articles status`)."""
    store = open_store(settings)
    try:
        return store.count()
    finally:
        store.close()


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    try:
        listed = [entries.truncate_strings(e, LIST_CHARS, keep=_WHOLE) for e in store.list()]
    finally:
        store.close()
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    table = Table("task id", "task", "error", "reason", "deliveries", "last failed", "queue")
    table.title = f"Dead letters ({len(listed)})"
    for entry in listed:
        error = entry.get("error") or {}
        table.add_row(
            entry["task_id"],
            entry.get("task") or "",
            f"{error.get('type')}: {error.get('message', '')}"[:80],
            entry.get("reason") or "",
            str(entry.get("deliveries")),
            entry.get("last_failed_at") or "",
            entry.get("queue") or "",
        )
    out.print(table)
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from worker.runtime.app import app
    from worker.runtime.deadletters.replay import replay

    store = open_store(settings)
    replayed: list[str] = []
    try:
        chosen = _chosen(store, args)
        for entry in chosen:
            replay(app, entry)
            # Only once the broker has the message: a failed publish keeps the entry.
            replayed.append(entry["task_id"])
            err.print(f"replayed {entry.get('task')}[{entry['task_id']}]", markup=False)
            if len(replayed) == _REMOVE_BATCH:
                store.remove_many(replayed)
                replayed.clear()
    finally:
        # Removed in batches: the RabbitMQ store reads its whole queue once per removal.
        if replayed:
            store.remove_many(replayed)
        store.close()
    out.print(f"{len(chosen)} dead letter(s) replayed")
    return 0


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    try:
        chosen = _chosen(store, args)
        removed = store.remove_many([entry["task_id"] for entry in chosen])
    finally:
        store.close()
    out.print(f"{removed} dead letter(s) purged")
    return 0


def _chosen(store: DeadLetterStore, args: argparse.Namespace) -> list[Entry]:
    if args.all:
        return store.list()
    found = []
    for task_id in args.task_ids:
        entry = store.get(task_id)
        if entry is None:
            raise UnknownDeadLetter(f"no dead letter with task id {task_id}")
        found.append(entry)
    return found
