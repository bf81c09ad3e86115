"""One benchmark run: every row measured side by side, repeats interleaved, medians reported."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections import defaultdict

import redis

from bench import measure, report
from bench.config import BenchConfig
from bench.workers import ROOT, Worker, running_worker
from worker.runtime.app import app


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
    with contextlib.ExitStack() as stack:
        workers = {
            bridge: stack.enter_context(
                running_worker(
                    app,
                    cfg.worker_env(bridge),
                    name=bridge,
                    concurrency=cfg.concurrency,
                    log_dir=log_dir,
                )
            )
            for bridge in ("nullpool", "loop")
        }
        for worker in workers.values():
            _articles(cfg, worker, client, cfg.warmup_tasks)
        rss = {bridge: [w.rss_mb()] for bridge, w in workers.items()}
        counts = dict.fromkeys(workers, 0)
        per_repeat = {"loop": cfg.article_tasks_loop, "nullpool": cfg.article_tasks_nullpool}
        for repeat in range(cfg.repeats):
            samples["noop"].append(
                measure.task_throughput(
                    workers["loop"], client, "tests.noop", [{}] * cfg.noop_tasks
                )
            )
            for bridge, worker in workers.items():
                samples[f"article_{bridge}"].append(
                    _articles(cfg, worker, client, per_repeat[bridge])
                )
                counts[bridge] += per_repeat[bridge]
                samples[f"pipeline_{bridge}"].append(measure.pipeline_rate(cfg, worker, client))
            samples["pipeline_direct"].append(measure.direct_pipeline_rate(cfg))
            _say(f"bench: repeat {repeat + 1}/{cfg.repeats} done ({_elapsed(started)})")
        for bridge, worker in workers.items():
            if counts[bridge] < cfg.memory_tasks:
                _articles(cfg, worker, client, cfg.memory_tasks - counts[bridge])
            rss[bridge].append(worker.rss_mb())
            samples[f"rss_{bridge}_before"].append(rss[bridge][0])
            samples[f"rss_{bridge}_after"].append(rss[bridge][1])
        _say(f"bench: memory over {cfg.memory_tasks} tasks per bridge measured")
    _clear_results(client)
    client.close()

    conditions = {
        "machine": f"{platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}",
        "duration": _elapsed(started),
        "mode": "quick smoke run (numbers not meaningful)" if cfg.quick else "full run",
        "repeats": str(cfg.repeats),
        "concurrency": str(cfg.concurrency),
        "memory_tasks": str(cfg.memory_tasks),
        "pipeline_articles": str(cfg.pipeline_articles),
        "batch_size": str(cfg.batch_size),
        "load": f"{load_at_start} at start, {_loadavg()} at end (1/5/15-min load averages)",
    }
    report.write(cfg, samples, conditions)


def _articles(cfg: BenchConfig, worker: Worker, client: redis.Redis, count: int) -> float:
    measure.seed(cfg, count)
    kwargs = [{"article_id": i} for i in range(1, count + 1)]
    return measure.task_throughput(worker, client, "articles.process_article", kwargs)


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
