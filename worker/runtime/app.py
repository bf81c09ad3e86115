"""The worker's Celery application.

Its configuration loads when something first asks for it (a worker, beat, the `articles`
command): importing this module connects to nothing and validates no setting yet.
"""

from __future__ import annotations

from celery import Celery

app = Celery("articles")
app.config_from_object("worker.runtime.config")
