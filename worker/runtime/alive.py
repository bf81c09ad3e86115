"""A liveness file for the worker's health check, instead of a broadcast `celery inspect ping`.

`celery inspect ping -d <node>` goes to every worker through the broadcast exchange: each health
check of each container wakes every worker. Here the consumer touches `WORKER_ALIVE_FILE` every
`ALIVE_INTERVAL` seconds from its own event loop (the timer that also drives heartbeats), so a
fresh file means the consumer loop is running; a check only reads the file's age.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import bootsteps

from worker.runtime.settings import get_settings

log = logging.getLogger(__name__)

ALIVE_INTERVAL = 10.0


class AliveFile(bootsteps.StartStopStep):
    """Consumer step: touch the alive file on a timer while the consumer runs."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        path = get_settings().worker_alive_file
        self.path = Path(path) if path else None
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        if self.path is None:
            return
        self._touch()
        self.tref = parent.timer.call_repeatedly(ALIVE_INTERVAL, self._touch)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)  # a stopped worker is not alive

    def _touch(self) -> None:
        assert self.path is not None
        try:
            self.path.touch()
        except OSError as exc:
            log.warning("cannot touch the alive file %s: %s", self.path, exc)
