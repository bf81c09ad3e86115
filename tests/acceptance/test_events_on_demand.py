"""Task events on demand: a worker starts sending none, and `enable_events` (what Flower
broadcasts while it runs, and `celery control enable_events`) turns them on.

The worker runs as a user's would with the cluster steps off (`--without-gossip`,
`--without-mingle`, `--without-heartbeat`): remote control is its pidbox queue, not gossip, so it
still answers the broadcast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.events.receiver import EventReceiver

from articles_client import contract
from tests.support.env import service_env
from tests.support.processes import celery_worker
from worker.runtime.app import app

pytestmark = pytest.mark.acceptance

QUIET_SECONDS = 3


class _Listener(EventReceiver):
    """Collects the uuids of task-succeeded events; `ready` is set once its queue is bound."""

    def __init__(self, channel: Any) -> None:
        super().__init__(channel, handlers={"task-succeeded": self._on_succeeded}, app=app)
        self.ready = threading.Event()
        self.succeeded: set[str] = set()

    def _on_succeeded(self, event: dict[str, Any]) -> None:
        self.succeeded.add(str(event["uuid"]))

    def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
        self.ready.set()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    with app.connection_for_read() as conn:
        receiver = _Listener(conn)
        thread = threading.Thread(
            target=receiver.capture, kwargs={"wakeup": False}, daemon=True, name="events"
        )
        thread.start()
        assert receiver.ready.wait(30), "the event receiver did not start consuming"
        try:
            yield receiver
        finally:
            receiver.should_stop = True
            thread.join(10)


def _ingest() -> str:
    result = app.send_task(contract.INGEST, kwargs={"title": "Watched", "body": "One. Two."})
    result.get(timeout=30)
    return str(result.id)


def test_worker_starts_without_task_events_and_enable_events_turns_them_on(
    subprocess_workers_only: None, tmp_path: Path, listener: _Listener
) -> None:
    with celery_worker(service_env(), tmp_path, concurrency=1, name="ondemand"):
        unwatched = _ingest()
        time.sleep(QUIET_SECONDS)
        assert unwatched not in listener.succeeded, "a task event was sent before anyone asked"

        try:
            replies = app.control.enable_events(reply=True, timeout=10)
            answers = [a for r in replies for name, a in r.items() if name.startswith("ondemand@")]
            assert answers == [{"ok": "task events enabled"}], replies

            watched = _ingest()
            deadline = time.monotonic() + 15
            while watched not in listener.succeeded and time.monotonic() < deadline:
                time.sleep(0.1)
            assert watched in listener.succeeded, "no task-succeeded event after enable_events"
        finally:
            # The broadcast reached the session's in-process worker too: leave it as it was.
            app.control.disable_events()
