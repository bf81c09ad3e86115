"""The two tasks `python -m bench.async_task` compares: the same work, sync and `@async_task`."""

from __future__ import annotations

from worker import app, async_task


@app.task(name="bench.sync_add")
def sync_add(x: int, y: int) -> int:
    return x + y


@async_task(name="bench.async_add")
async def async_add(x: int, y: int) -> int:
    return x + y
