"""The peers' rows: taskiq and ARQ workers doing `process_article`'s work on the same servers,
with the same concurrency, timed by the database's own clock.

Each run queues every job first, then starts the peer's workers (`concurrency` processes, one job
at a time each, as a prefork Celery worker), waits until every article is done and takes the rate
over the middle 80% of the articles' `processed_at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import asyncpg
import redis

from bench import measure
from bench.config import BenchConfig
from bench.workers import ROOT, stop_group

ARQ_VENV = ROOT / "var" / "bench-arq-venv"
# arq 0.28 needs redis<6, which kombu 5.7 (redis>=6.4) does not allow in the project's venv.
ARQ_REQUIREMENTS = ("arq==0.28.*", "sqlalchemy[asyncio]>=2.0.30,<2.2", "asyncpg>=0.29")
TASKIQ = str(Path(sys.executable).with_name("taskiq"))


def ensure_arq_venv() -> Path:
    """ARQ's own virtualenv under `var/`, built with pip the first time (about a minute)."""
    python = ARQ_VENV / "bin" / "python"
    stamp = ARQ_VENV / ".requirements"
    wanted = "\n".join(ARQ_REQUIREMENTS)
    if not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(ARQ_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", *ARQ_REQUIREMENTS]
        done = subprocess.run(pip, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"could not build {ARQ_VENV}:\n{done.stdout}{done.stderr}")
        stamp.write_text(wanted)
    return python


def _env(cfg: BenchConfig) -> dict[str, str]:
    return cfg.worker_env("loop")


def taskiq_rate(cfg: BenchConfig, count: int, log_dir: Path) -> float:
    from bench import taskiq_peer

    measure.seed(cfg, count)
    asyncio.run(taskiq_peer.enqueue(range(1, count + 1)))
    args = [
        TASKIQ, "worker", "bench.taskiq_peer:broker", "--workers", str(cfg.concurrency),
        "--max-async-tasks", "1", "--log-level", "WARNING",
    ]  # fmt: skip
    with _running([args], _env(cfg), log_dir / "taskiq.log"):
        _wait_processed(cfg, count)
    return _processed_rate(cfg)


def arq_rate(cfg: BenchConfig, count: int, log_dir: Path) -> float:
    python = str(ensure_arq_venv())
    env = _env(cfg)
    measure.seed(cfg, count)
    subprocess.run(
        [python, "-m", "bench.arq_peer", "enqueue", str(count)], cwd=ROOT, env=env, check=True
    )
    work = [python, "-m", "bench.arq_peer", "work"]
    with _running([work] * cfg.concurrency, env, log_dir / "arq.log"):
        _wait_processed(cfg, count)
    return _processed_rate(cfg)


def clear_queues(client: redis.Redis) -> None:
    """The peers' keys in the bench's Redis db: their queues and ARQ's stored results."""
    for pattern in ("bench.taskiq*", "bench.arq*", "arq:*"):
        keys = list(client.scan_iter(match=pattern, count=5000))
        for i in range(0, len(keys), 5000):
            client.unlink(*keys[i : i + 5000])


@contextlib.contextmanager
def _running(commands: Sequence[list[str]], env: dict[str, str], log_path: Path) -> Iterator[None]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    with log_path.open("wb") as log:
        try:
            for args in commands:
                procs.append(
                    subprocess.Popen(
                        args,
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            yield
        finally:
            for proc in procs:
                stop_group(proc)
    for proc in procs:
        if proc.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"peer worker exited with {proc.returncode}; see {log_path}")


def _wait_processed(cfg: BenchConfig, count: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while _count_processed(cfg) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the peer did not process {count} articles in {timeout} s")
        time.sleep(0.2)


def _count_processed(cfg: BenchConfig) -> int:
    async def go() -> int:
        conn = await asyncpg.connect(cfg.plain_database_url)
        try:
            return int(
                await conn.fetchval("SELECT count(*) FROM articles WHERE processed_at IS NOT NULL")
            )
        finally:
            await conn.close()

    return asyncio.run(go())


def _processed_rate(cfg: BenchConfig) -> float:
    async def go() -> list[float]:
        conn = await asyncpg.connect(cfg.plain_database_url)
        try:
            rows = await conn.fetch(
                "SELECT extract(epoch FROM processed_at)::float8 AS t, status, times_processed "
                "FROM articles ORDER BY processed_at"
            )
        finally:
            await conn.close()
        wrong = [r for r in rows if r["status"] != "done" or r["times_processed"] != 1]
        if wrong:
            raise RuntimeError(
                f"{len(wrong)} articles not done exactly once, e.g. {dict(wrong[0])}"
            )
        return [float(r["t"]) for r in rows]

    return measure.steady_rate(asyncio.run(go()))
