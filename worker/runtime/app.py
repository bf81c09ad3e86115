"""The worker's Celery application.

Its configuration loads when something first asks for it (a worker, beat, the `articles`
command): importing this module connects to nothing and validates no setting yet.
"""

from __future__ import annotations

from celery import Celery

# Every task, a user's plain `@app.task` included, gets deadline retries and the poison check.
app = Celery("articles", task_cls="worker.runtime.task_base:WorkerTask")
app.config_from_object("worker.runtime.config")
# The worker's health-check file (WORKER_ALIVE_FILE), touched from the consumer's loop.
app.steps["consumer"].add("worker.runtime.alive:AliveFile")
# Task events stay off until Flower or `celery control enable_events` asks, whatever the flags.
app.steps["consumer"].add("worker.runtime.events_on_demand:EventsOnDemand")
