"""`python -m bench.soak` (`make bench BENCH=soak`): memory over a long run of per-task work.

For each bridge, one `-c 2` prefork worker runs `SOAK_TASKS` `process_article` tasks (default
200,000), queued in rounds of `SOAK_EVERY` (default 20,000); after each round the resident memory
(VmRSS) of the worker's main process and of each pool child is recorded. The first round is the
warm-up: "flat" means every later sample within 5% of the one taken after it. Not part of the
default `make bench`: at this machine's rates a full soak takes about an hour.

- `SOAK_TASKS`, `SOAK_EVERY`, `SOAK_BRIDGES` (default `loop,nullpool`);
- the servers and database as for `make bench` (bench/config.py), but by default its own database
  `articles_soak` and Redis db 13;
- the table goes to stdout as it grows and to `bench/soak_results.md` (`BENCH_OUT`);
- `SOAK_TRACEMALLOC=1`: the worker's main process traces its allocations and writes the sites that
  grew most after every round (bench/memtrace.py), next to the table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAT = 0.05


@dataclass
class Sample:
    tasks: int
    main_mb: float
    children_mb: list[float]
    children: list[int]
    rate: float
    load: str


@dataclass
class Soak:
    bridge: str
    samples: list[Sample] = field(default_factory=list)

    def drift(self) -> tuple[float, float]:
        """Largest relative change of the main process and of the children's total, after the
        warm-up sample."""
        if len(self.samples) < 2:
            return 0.0, 0.0
        base, later = self.samples[0], self.samples[1:]
        main = max(abs(s.main_mb - base.main_mb) / base.main_mb for s in later)
        total = sum(base.children_mb)
        kids = max(abs(sum(s.children_mb) - total) / total for s in later)
        return main, kids


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return sorted(int(p) for p in out.stdout.split())


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _table(soaks: list[Soak], total: int, every: int) -> str:
    lines = [
        f"# Memory soak: {total:,} `process_article` tasks per bridge, `-c 2` prefork, RSS every "
        f"{every:,}",
        "",
        "RSS in MB (VmRSS). The first row is after the warm-up round; drift is the largest change "
        f"from it (target: within {FLAT:.0%}). Pool children are listed by pid, so a recycled "
        "child shows as a new pid.",
        "",
    ]
    for soak in soaks:
        main, kids = soak.drift()
        lines += [
            f"## `{soak.bridge}`: main process drift {main:.1%}, children drift {kids:.1%}",
            "",
            "| tasks | main process | children (pid: MB) | tasks/s in the round | load average |",
            "| ---: | ---: | --- | ---: | --- |",
        ]
        for s in soak.samples:
            kids_text = ", ".join(
                f"{pid}: {mb:.1f}" for pid, mb in zip(s.children, s.children_mb, strict=True)
            )
            lines.append(
                f"| {s.tasks:,} | {s.main_mb:.1f} | {kids_text} | {s.rate:.0f} | {s.load} |"
            )
        lines.append("")
    return "\n".join(lines)


def _run_round(worker: Any, client: Any, kwargs: list[dict[str, int]]) -> float:
    """Queue a round while the worker runs (publishing is no small part of the time, so it
    overlaps the work) and wait for every result; the round's steady rate in tasks/s."""
    from bench import measure

    ids = [uuid.uuid4().hex for _ in kwargs]
    for task_id, kw in zip(ids, kwargs, strict=True):
        worker.app.send_task(
            "articles.process_article", kwargs=kw, queue=worker.queue, task_id=task_id
        )
    return measure.steady_rate(measure.wait_results(client, ids))


def main() -> int:
    # Stopped with SIGTERM (or SIGINT), the worker it started is stopped too, on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("BENCH_DATABASE_NAME", "articles_soak")
    os.environ.setdefault("BENCH_REDIS_DB", "13")
    from bench.config import load

    cfg = load()
    os.environ.update(cfg.worker_env("loop"))
    import redis

    from bench import measure
    from bench.runner import _clear_results
    from bench.workers import ROOT, running_worker
    from worker.runtime.app import app

    total = int(os.environ.get("SOAK_TASKS", 200_000))
    every = int(os.environ.get("SOAK_EVERY", 20_000))
    bridges = os.environ.get("SOAK_BRIDGES", "loop,nullpool").split(",")
    traced = os.environ.get("SOAK_TRACEMALLOC", "") not in ("", "0")
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    out = cfg.out_dir / "soak_results.md"
    client = redis.Redis.from_url(cfg.redis_url)
    measure.recreate_database(cfg)
    soaks: list[Soak] = []
    for bridge in bridges:
        soak = Soak(bridge)
        soaks.append(soak)
        log_dir = ROOT / "var" / "bench"
        env = cfg.worker_env(bridge)
        if traced:
            env["EXTRA_TASK_MODULES"] += ",bench.memtrace"
            env["SOAK_TRACEMALLOC_DIR"] = str(cfg.out_dir)
        with running_worker(
            app, env, name=f"soak-{bridge}", concurrency=2, log_dir=log_dir
        ) as worker:
            done = 0
            while done < total:
                count = min(every, total - done)
                measure.seed(cfg, count)
                kwargs = [{"article_id": i} for i in range(1, count + 1)]
                started = time.monotonic()
                rate = _run_round(worker, client, kwargs)
                _clear_results(client)
                done += count
                pid = worker.popen.pid
                if traced:
                    os.kill(pid, signal.SIGUSR2)
                children = _children(pid)
                soak.samples.append(
                    Sample(
                        done,
                        _rss_mb(pid),
                        [_rss_mb(c) for c in children],
                        children,
                        rate,
                        _loadavg(),
                    )
                )
                last = soak.samples[-1]
                print(
                    f"soak {bridge}: {done:,} tasks, main {last.main_mb:.1f} MB, children "
                    f"{[round(m, 1) for m in last.children_mb]} MB, {rate:.0f}/s, "
                    f"round {time.monotonic() - started:.0f} s, load {last.load}",
                    flush=True,
                )
                out.write_text(_table(soaks, total, every) + "\n")
    client.close()
    print(_table(soaks, total, every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
