"""One benchmark run: every row measured side by side, repeats interleaved, medians reported."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import redis

from bench import measure, peers, report, scram
from bench.bare_app import app as bare_app
from bench.config import BenchConfig
from bench.workers import ROOT, Worker, running_worker
from worker.runtime.app import app

SYNC_REFERENCE = "bench.sync_process_article"


def run(cfg: BenchConfig) -> None:
    started = time.monotonic()
    load_at_start = _loadavg()
    samples: dict[str, list[float]] = defaultdict(list)
    client = redis.Redis.from_url(cfg.redis_url)
    _clear_results(client)
    measure.recreate_database(cfg)
    _say(f"bench: {'quick smoke run' if cfg.quick else 'full run'}, {cfg.repeats} repeats")

    for _ in range(cfg.repeats):
        for name, value in measure.bridge_overheads(cfg).items():
            samples[f"bridge_{name}"].append(value)
    _say("bench: bridge overheads measured")

    log_dir = ROOT / "var" / "bench"
    _main_rows(cfg, client, samples, log_dir, started)
    _scram_rows(cfg, samples, log_dir, started)
    _clear_results(client)
    peers.clear_queues(client)
    client.close()

    conditions = {
        "machine": f"{platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}",
        "duration": _elapsed(started),
        "mode": "quick smoke run (numbers not meaningful)" if cfg.quick else "full run",
        "repeats": str(cfg.repeats),
        "concurrency": str(cfg.concurrency),
        "tasks per run": (
            f"empty {cfg.noop_tasks}, process_article loop/sync {cfg.article_tasks_loop}, "
            f"nullpool {cfg.article_tasks_nullpool}, peers {cfg.peer_tasks}, "
            f"warm-up {cfg.warmup_tasks}"
        ),
        "memory_tasks": str(cfg.memory_tasks),
        "pipeline_articles": str(cfg.pipeline_articles),
        "batch_size": str(cfg.batch_size),
        "load": f"{load_at_start} at start, {_loadavg()} at end (1/5/15-min load averages)",
    }
    report.write(cfg, samples, conditions)


def _main_rows(
    cfg: BenchConfig,
    client: redis.Redis,
    samples: dict[str, list[float]],
    log_dir: Path,
    started: float,
) -> None:
    """Every row on the shared servers, repeats interleaved so load drifts touch all alike."""
    peers.ensure_arq_venv()
    with contextlib.ExitStack() as stack:
        workers = {
            bridge: stack.enter_context(
                running_worker(
                    app, cfg.worker_env(bridge), name=bridge, concurrency=cfg.concurrency,
                    log_dir=log_dir,
                )
            )
            for bridge in ("nullpool", "loop")
        }  # fmt: skip
        bare = stack.enter_context(
            running_worker(
                bare_app, cfg.worker_env("loop"), name="bare", concurrency=cfg.concurrency,
                log_dir=log_dir, app_module="bench.bare_app",
            )
        )  # fmt: skip
        for worker in workers.values():
            _articles(cfg, worker, client, cfg.warmup_tasks)
        rss = {bridge: [w.rss_mb()] for bridge, w in workers.items()}
        counts = dict.fromkeys(workers, 0)
        per_repeat = {"loop": cfg.article_tasks_loop, "nullpool": cfg.article_tasks_nullpool}
        for repeat in range(cfg.repeats):
            noops = [{}] * cfg.noop_tasks
            samples["noop"].append(
                measure.task_throughput(workers["loop"], client, "tests.noop", noops)
            )
            samples["noop_bare"].append(measure.task_throughput(bare, client, "bare.noop", noops))
            for bridge, worker in workers.items():
                samples[f"article_{bridge}"].append(
                    _articles(cfg, worker, client, per_repeat[bridge])
                )
                counts[bridge] += per_repeat[bridge]
                samples[f"pipeline_{bridge}"].append(measure.pipeline_rate(cfg, worker, client))
            samples["article_sync"].append(
                _articles(cfg, workers["loop"], client, cfg.article_tasks_loop, SYNC_REFERENCE)
            )
            samples["pipeline_direct"].append(measure.direct_pipeline_rate(cfg))
            samples["peer_taskiq"].append(peers.taskiq_rate(cfg, cfg.peer_tasks, log_dir))
            samples["peer_arq"].append(peers.arq_rate(cfg, cfg.peer_tasks, log_dir))
            _say(f"bench: repeat {repeat + 1}/{cfg.repeats} done ({_elapsed(started)})")
        for bridge, worker in workers.items():
            if counts[bridge] < cfg.memory_tasks:
                _articles(cfg, worker, client, cfg.memory_tasks - counts[bridge])
            rss[bridge].append(worker.rss_mb())
            samples[f"rss_{bridge}_before"].append(rss[bridge][0])
            samples[f"rss_{bridge}_after"].append(rss[bridge][1])
        _say(f"bench: memory over {cfg.memory_tasks} tasks per bridge measured")


def _scram_rows(
    cfg: BenchConfig, samples: dict[str, list[float]], log_dir: Path, started: float
) -> None:
    """`nullpool` against `loop` on a private PostgreSQL that makes them log in by scram."""
    with scram.scram_database(cfg) as (private, login_url), contextlib.ExitStack() as stack:
        client = redis.Redis.from_url(cfg.redis_url)
        stack.callback(client.close)
        workers = {
            bridge: stack.enter_context(
                running_worker(
                    app, cfg.worker_env(bridge, login_url), name=f"scram-{bridge}",
                    concurrency=cfg.concurrency, log_dir=log_dir,
                )
            )
            for bridge in ("nullpool", "loop")
        }  # fmt: skip
        per_repeat = {"loop": cfg.article_tasks_loop, "nullpool": cfg.article_tasks_nullpool}
        for worker in workers.values():
            _articles(private, worker, client, max(20, cfg.warmup_tasks // 4))
        for _ in range(cfg.repeats):
            for bridge, worker in workers.items():
                samples[f"scram_{bridge}"].append(
                    _articles(private, worker, client, per_repeat[bridge])
                )
        _say(f"bench: scram-sha-256 rows measured ({_elapsed(started)})")


def _articles(
    cfg: BenchConfig,
    worker: Worker,
    client: redis.Redis,
    count: int,
    task: str = "articles.process_article",
) -> float:
    measure.seed(cfg, count)
    kwargs = [{"article_id": i} for i in range(1, count + 1)]
    return measure.task_throughput(worker, client, task, kwargs)


def _clear_results(client: redis.Redis) -> None:
    """Delete stored task results; never the whole db (its queue bindings may be in use)."""
    batch: list[bytes] = []
    for key in client.scan_iter(match="celery-task-meta-*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def _cpus() -> int:
    return os.cpu_count() or 0


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.0f} s"


def _say(message: str) -> None:
    print(message, flush=True)
