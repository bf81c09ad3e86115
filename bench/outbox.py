"""`python -m bench.outbox` (`make bench BENCH=outbox`): what the transactional outbox costs.

Against the real servers (its own database `articles_bench_outbox`, Redis db `BENCH_REDIS_DB`,
default 12; `BENCH_QUICK=1` for a smoke run), with a real `articles outbox relay` process:

1. commit-to-publish latency, p50 and p99: from the moment the enqueuing transaction's commit
   returns to the moment the message can be popped from the broker's queue, idle (one
   transaction at a time) and under load (20 concurrent tasks committing as fast as they can);
2. relay throughput: a backlog of rows, published as fast as one relay can;
3. what an outbox enqueue adds to the caller's transaction, against a plain
   `enqueue_ingest_async` after it (the producer's publish) and the transaction alone.

Writes `bench/outbox_results.md`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_OUTBOX_DATABASE_NAME", "articles_bench_outbox")
REDIS_URL = (
    f"redis://{os.environ.get('BENCH_REDIS_HOST', '127.0.0.1:6379')}/"
    f"{os.environ.get('BENCH_REDIS_DB', '12')}"
)
DATABASE_URL = f"postgresql+asyncpg://{ADMIN_URL.split('://', 1)[1].rsplit('/', 1)[0]}/{DB_NAME}"
BODY = "One sentence about the outbox. Another sentence after it."

IDLE_TX = 50 if QUICK else 500
LOAD_TX = 400 if QUICK else 5000
LOAD_TASKS = 20
BACKLOG = 2000 if QUICK else 10_000
COST_TX = 100 if QUICK else 1000

# Settings are read once, at first use: point them at the bench's servers before any import.
os.environ.update(
    DATABASE_URL=DATABASE_URL, CELERY_BROKER_URL=REDIS_URL, CELERY_RESULT_BACKEND=REDIS_URL
)

import asyncpg  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession  # noqa: E402

from articles_client import contract  # noqa: E402
from articles_client.producer import enqueue_ingest_async  # noqa: E402
from db.engine import make_engine  # noqa: E402
from worker import outbox  # noqa: E402

# Where the contract routes articles.ingest, the task measured here.
QUEUE = contract.ROUTES[contract.INGEST]


class Arrivals:
    """Pops every message off the queue in a thread and notes when each task id arrived."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._client = redis.Redis.from_url(REDIS_URL)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import json

        while not self._stop.is_set():
            popped = self._client.brpop([QUEUE], timeout=0.2)
            if popped is not None:
                now = time.perf_counter()
                self.times[json.loads(popped[1])["headers"]["id"]] = now

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Figures:
    rows: list[tuple[str, str]]

    def add(self, name: str, value: str) -> None:
        print(f"{name}: {value}", flush=True)
        self.rows.append((name, value))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return (
        f"p50 {pct(values, 0.5) * 1000:.1f} ms, p99 {pct(values, 0.99) * 1000:.1f} ms "
        f"(n={len(values)})"
    )


async def recreate() -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()
    from db.migrate import upgrade

    await asyncio.to_thread(upgrade, DATABASE_URL)


@contextmanager
def relay(log: Path) -> Any:
    env = dict(os.environ)
    args = [str(Path(sys.executable).with_name("articles")), "outbox", "relay"]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 60
    while "outbox relay ready" not in log.read_text(errors="replace"):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"the relay did not start:\n{log.read_text()}")
        time.sleep(0.05)
    time.sleep(0.5)  # connected and listening
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


async def one_job(engine: AsyncEngine, i: int) -> tuple[str, float]:
    async with AsyncSession(engine) as session:
        async with session.begin():
            task_id = await outbox.enqueue_async(
                session, "articles.ingest", title=f"t{i}", body=BODY, external_id=f"b{i}"
            )
        return task_id, time.perf_counter()


async def latency_idle(engine: AsyncEngine) -> dict[str, float]:
    committed = {}
    for i in range(IDLE_TX):
        task_id, at = await one_job(engine, i)
        committed[task_id] = at
        await asyncio.sleep(0.02)
    return committed


async def latency_load(engine: AsyncEngine) -> tuple[dict[str, float], float]:
    committed: dict[str, float] = {}

    async def task(k: int) -> None:
        for i in range(k, LOAD_TX, LOAD_TASKS):
            task_id, at = await one_job(engine, 1_000_000 + i)
            committed[task_id] = at

    start = time.perf_counter()
    await asyncio.gather(*(task(k) for k in range(LOAD_TASKS)))
    return committed, LOAD_TX / (time.perf_counter() - start)


def latencies(committed: dict[str, float], arrivals: Arrivals) -> list[float]:
    deadline = time.monotonic() + 120
    while not set(committed) <= set(arrivals.times):
        if time.monotonic() > deadline:
            raise RuntimeError("not every committed job reached the broker")
        time.sleep(0.05)
    return [arrivals.times[t] - c for t, c in committed.items()]


async def fill_backlog(count: int) -> None:
    engine = make_engine(DATABASE_URL)
    try:
        for start in range(0, count, 5000):
            async with AsyncSession(engine) as session, session.begin():
                for i in range(start, min(count, start + 5000)):
                    await outbox.enqueue_async(
                        session, "articles.ingest", title=f"t{i}", body=BODY, external_id=f"k{i}"
                    )
    finally:
        await engine.dispose()


async def outbox_rows() -> int:
    conn = await asyncpg.connect(DATABASE_URL.replace("+asyncpg", ""))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM articles_outbox"))
    finally:
        await conn.close()


def throughput(log: Path) -> float:
    asyncio.run(fill_backlog(BACKLOG))
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(QUEUE)
    with relay(log):
        while client.llen(QUEUE) == 0:
            time.sleep(0.001)
        start = time.perf_counter()
        while asyncio.run(outbox_rows()) > 0:
            time.sleep(0.05)
        took = time.perf_counter() - start
    client.delete(QUEUE)
    return BACKLOG / took


async def enqueue_costs() -> dict[str, list[float]]:
    engine = make_engine(DATABASE_URL, pool_size=2)
    # The caller's own write in each transaction: one small row, as a web handler would.
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS bench_orders (id bigserial, v int)"))

    async def order(session: AsyncSession) -> None:
        await session.execute(text("INSERT INTO bench_orders (v) VALUES (1)"))

    async def alone(session: AsyncSession, i: int) -> None:
        await order(session)

    async def with_outbox(session: AsyncSession, i: int) -> None:
        await order(session)
        await outbox.enqueue_async(session, "articles.ingest", title="t", body=BODY)

    async def with_producer(session: AsyncSession, i: int) -> None:
        await order(session)
        await enqueue_ingest_async(title="t", body=BODY)

    kinds: dict[str, Callable[[AsyncSession, int], Awaitable[None]]] = {
        "transaction alone": alone,
        "+ outbox.enqueue_async": with_outbox,
        "+ enqueue_ingest_async (producer)": with_producer,
    }
    timings: dict[str, list[float]] = {name: [] for name in kinds}
    try:
        for i in range(COST_TX):
            for name, body in kinds.items():  # interleaved: the same conditions for each
                async with AsyncSession(engine) as session:
                    start = time.perf_counter()
                    async with session.begin():
                        await body(session, i)
                    timings[name].append(time.perf_counter() - start)
    finally:
        await engine.dispose()
    return timings


def main() -> int:
    figures = Figures(rows=[])
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    asyncio.run(recreate())
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(QUEUE)
    log = ROOT / "var" / "bench" / "outbox-relay.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")

    with relay(log), Arrivals() as arrivals:

        async def both() -> tuple[dict[str, float], dict[str, float], float]:
            engine = make_engine(DATABASE_URL, pool_size=LOAD_TASKS)
            try:
                for i in range(20):  # warm the pool and the relay
                    await one_job(engine, 10_000_000 + i)
                idle = await latency_idle(engine)
                load, rate = await latency_load(engine)
                return idle, load, rate
            finally:
                await engine.dispose()

        idle, load, rate = asyncio.run(both())
        figures.add("commit-to-publish latency, idle", ms(latencies(idle, arrivals)))
        figures.add(
            f"commit-to-publish latency, {LOAD_TASKS} tasks committing ({rate:.0f} tx/s)",
            ms(latencies(load, arrivals)),
        )
    client.delete(QUEUE)
    figures.add(
        f"relay throughput, backlog of {BACKLOG:,} rows (one relay)",
        f"{throughput(log):,.0f} rows/s",
    )
    costs = asyncio.run(enqueue_costs())
    client.delete(QUEUE)
    base = statistics.median(costs["transaction alone"])
    for name, values in costs.items():
        extra = (
            ""
            if name == "transaction alone"
            else f", +{(statistics.median(values) - base) * 1000:.2f} ms"
        )
        figures.add(f"caller's transaction, {name}", f"{ms(values)}{extra}")
    write(figures, time.monotonic() - started, load_before)
    return 0


def write(figures: Figures, seconds: float, load: float) -> None:
    lines = [
        "# Outbox benchmark",
        "",
        f"`python -m bench.outbox`{' (BENCH_QUICK)' if QUICK else ''}, "
        f"{time.strftime('%Y-%m-%d')}, {seconds:.0f} s, load average at start {load:.2f}, "
        f"{os.cpu_count()} CPUs.",
        "",
        "| Measurement | Result |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in figures.rows),
        "",
    ]
    out = Path(os.environ.get("BENCH_OUT", ROOT / "bench")) / "outbox_results.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
