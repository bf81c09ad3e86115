"""The articles-worker client: the task contract and a thin producer for other services.

Installs on its own (`pip install ./client`) with only Celery and pydantic; imports nothing of
the worker, its database layer or its tasks.
"""

from articles_client.config import ClientConfig
from articles_client.producer import configure

__all__ = ["ClientConfig", "configure"]
