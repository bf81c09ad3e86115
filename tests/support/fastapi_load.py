"""Load for the FastAPI example, run by the client venv's Python (which has httpx).

    python fastapi_load.py load BASE_URL N PREFIX    N concurrent POST /articles
    python fastapi_load.py health BASE_URL STOP OUT  GET /health every 10 ms until STOP exists

`load` prints one JSON line with the responses; `health` appends one JSON line per sample
(time, latency in ms, status) to OUT as it goes, so a test can read them while it runs.

The health prober is a process of its own, so the load's own event loop does not delay it: what
it measures is the service's answer time.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx


async def load(base: str, n: int, prefix: str) -> None:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def post(i: int) -> httpx.Response:
            body = {"title": f"{prefix}-{i}", "body": f"Article {i}. Two sentences here."}
            return await client.post("/articles", json=body)

        started = time.time()
        responses = await asyncio.gather(*(post(i) for i in range(n)))
        finished = time.time()
    print(
        json.dumps(
            {
                "started": started,
                "finished": finished,
                "statuses": [r.status_code for r in responses],
                "task_ids": [r.json().get("task_id") for r in responses],
            }
        )
    )


def health(base: str, stop: Path, out: Path) -> None:
    with httpx.Client(base_url=base, timeout=10) as client, out.open("a") as samples:
        while not stop.exists():
            started = time.perf_counter()
            response = client.get("/health")
            elapsed = time.perf_counter() - started
            samples.write(json.dumps([time.time(), elapsed * 1000, response.status_code]) + "\n")
            samples.flush()
            time.sleep(0.01)


if __name__ == "__main__":
    mode, base = sys.argv[1], sys.argv[2]
    if mode == "load":
        asyncio.run(load(base, int(sys.argv[3]), sys.argv[4]))
    else:
        health(base, Path(sys.argv[3]), Path(sys.argv[4]))
