"""A bare Celery app: the benchmark's broker and result backend, every other setting Celery's
default. Its empty task is the ceiling the project's own empty task is compared with."""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "bare", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_RESULT_BACKEND"]
)


@app.task(name="bare.noop")
def noop() -> None:
    return None
