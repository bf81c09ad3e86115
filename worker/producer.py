"""`from worker.producer import enqueue_ingest`: the client's producer, re-exported (one copy)."""

from articles_client.producer import (
    RETRY_POLICY,
    client_app,
    configure,
    enqueue_ingest,
    enqueue_ingest_async,
    enqueue_pipeline_run,
    enqueue_pipeline_run_async,
    enqueue_process_article,
    enqueue_process_article_async,
)

__all__ = [
    "RETRY_POLICY",
    "client_app",
    "configure",
    "enqueue_ingest",
    "enqueue_ingest_async",
    "enqueue_pipeline_run",
    "enqueue_pipeline_run_async",
    "enqueue_process_article",
    "enqueue_process_article_async",
]
