"""The Celery application. Importing it connects to nothing and imports no task or database code,
so the producer can use it with only the broker."""

from __future__ import annotations

from celery import Celery

app = Celery("articles")
app.config_from_object("celeryconfig")
