"""Task events on demand: a worker sends none until Flower or `celery control enable_events`
asks, however it was started.

With task events off (the default here), Celery builds no event dispatcher at all when gossip and
heartbeats are off too (`--without-gossip --without-heartbeat`): its Events step is skipped, and
`enable_events` answers "event dispatcher unavailable" (celery/worker/consumer/events.py,
celery/worker/control.py; found by tests/acceptance/test_events_on_demand.py). This step stands
in for it in exactly that case: a dispatcher for the `worker` group only, which sends nothing
per task, so the broadcast can add the `task` group and really turn task events on.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer.events import Events


class EventsOnDemand(Events):
    """Consumer step: Celery's Events step, run only when Celery's own is skipped."""

    requires = (Events,)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        celery_sends: bool = getattr(self, "send_events", False)
        self.enabled = not celery_sends  # Celery's own step runs otherwise
        self.send_events = True
        self.groups = ["worker"]

    def start(self, c: Any) -> None:
        super().start(c)
        # Celery's task strategies read whether events are on once, when built: rebuild them,
        # whether the Tasks step started before this one or not.
        c.update_strategies()
