"""A FastAPI service that enqueues article jobs with the articles-worker client, and nothing else.

    pip install ./client fastapi "uvicorn[standard]"
    export CELERY_BROKER_URL=redis://broker-host:6379/0 CELERY_RESULT_BACKEND=redis://broker-host:6379/1
    uvicorn fastapi_service:app --app-dir examples

`POST /articles` validates the article with the contract's own rules (422 naming the field),
enqueues `articles.ingest` without blocking the event loop (the publish runs in a thread) and
answers 202 with the task id; `GET /jobs/{task_id}` reads the job's state; `GET /health` never
touches the broker. tests/acceptance/test_fastapi_example.py runs this file under uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from articles_client.errors import BrokerUnavailable, InvalidPayload
from articles_client.producer import client_app, enqueue_ingest_async

app = FastAPI(title="articles example service")


class ArticleIn(BaseModel):
    title: str
    body: str
    source_url: str | None = None
    external_id: str | None = None


@app.post("/articles", status_code=202)
async def create_article(article: ArticleIn) -> dict[str, str]:
    """Enqueue one article for ingestion; the job id comes back at once."""
    try:
        result = await enqueue_ingest_async(**article.model_dump())
    except InvalidPayload as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    except BrokerUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    return {"task_id": result.id}


@app.get("/jobs/{task_id}")
async def job(task_id: str) -> dict[str, Any]:
    """A job's state and, once it succeeded, its result (one read of the result backend)."""
    backend = client_app().backend
    meta = await asyncio.to_thread(backend.get_task_meta, task_id)
    done = meta["status"] == "SUCCESS"
    return {"task_id": task_id, "state": meta["status"], "result": meta["result"] if done else None}


@app.get("/health")
async def health() -> dict[str, str]:
    """Liveness: answers from the event loop alone."""
    return {"status": "ok"}
