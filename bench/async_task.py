"""`python -m bench.async_task`: what `@async_task` costs over a plain sync task, same worker.

One prefork worker (`-c 1`) runs both tasks of `bench/tasks.py`, sent interleaved (sync, async,
sync, ...), so whatever else loads the machine falls on both alike. Per task, in the worker,
from `task_prerun` to `task_postrun` (what `@async_task` adds: argument validation, the bridge
crossing, the JSON result; Celery's own work around the body is the same for both):

- wall time, which the machine's load inflates;
- the worker process's CPU time, which it mostly does not (waiting for a CPU is not charged).

Then, in this process, the two task bodies called directly (`task.run(1, 2)`), alternating in
rounds, wall and CPU time per call: the wrapper alone, without Celery's work around it.

The first `BENCH_WARMUP` tasks of each kind are left out (imports, the bridge's first start).
Environment: `ASYNC_BRIDGE` (default `loop`), `BENCH_TASKS` (default 5000 per kind; 300 with
`BENCH_QUICK=1`), `BENCH_WARMUP` (default 200), and the servers of `bench/config.py`
(`BENCH_REDIS_DB`, `BENCH_DATABASE_NAME`: the tasks use no database, the settings need one).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.config import load as load_config

ROOT = Path(__file__).resolve().parents[1]
CELERY = str(Path(sys.executable).with_name("celery"))
RUNTIME = re.compile(r"bench-runtime (bench\.\w+) (\d+) (\d+) (\d+)")
KINDS = ("bench.sync_add", "bench.async_add")
CHUNK = 250  # pairs of tasks in flight at once


def main() -> int:
    cfg = load_config()
    env = cfg.worker_env(os.environ.get("ASYNC_BRIDGE", "loop"))
    env["EXTRA_TASK_MODULES"] = "bench.tasks"
    os.environ.update(env)
    from bench import tasks
    from worker.runtime.app import app

    count = int(os.environ.get("BENCH_TASKS", 300 if cfg.quick else 5000))
    warmup = int(os.environ.get("BENCH_WARMUP", 200))
    queue = f"bench.async.{uuid.uuid4().hex[:6]}"
    log_path = Path(tempfile.mkdtemp()) / "worker.log"
    args = [
        CELERY, "-A", "worker", "worker", "-l", "info", "-P", "prefork", "-c", "1", "-Q", queue,
        "-n", f"{queue}@bench", "--without-heartbeat", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    load_before = os.getloadavg()
    with log_path.open("wb") as log:
        worker = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(log_path)
        started = time.perf_counter()
        sent = 0
        while sent < count + warmup:
            # In chunks: thousands of results pending at once overflow the result backend's
            # pub/sub buffer while this process is still publishing, and replies are lost.
            pairs = min(CHUNK, count + warmup - sent)
            results = [
                task.apply_async((1, 2), queue=queue)
                for _ in range(pairs)
                for task in (tasks.sync_add, tasks.async_add)
            ]
            for result in results:
                assert result.get(timeout=120) == 3
            sent += pairs
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    samples: dict[str, list[tuple[float, float, int]]] = {kind: [] for kind in KINDS}
    for name, wall_ns, cpu_ns, switches in RUNTIME.findall(log_path.read_text()):
        samples[name].append((int(wall_ns) / 1e6, int(cpu_ns) / 1e6, int(switches)))
    load = (load_before[0], os.getloadavg()[0])
    print(f"bridge={env['ASYNC_BRIDGE']}, prefork -c 1, {count} tasks per kind, interleaved")
    print(
        f"load average (1 min): {load[0]:.2f} before, {load[1]:.2f} after, {os.cpu_count()} cores"
    )
    print(f"both kinds together: {2 * (count + warmup) / elapsed:.0f} tasks/s end to end")
    _report({kind: values[warmup:] for kind, values in samples.items()})
    _in_process(tasks.sync_add, tasks.async_add)
    app.close()
    return 0


def _report(samples: dict[str, list[tuple[float, float, int]]]) -> None:
    print(
        "| task (worker, prerun to postrun) | wall median ms | p90 | CPU median ms | p90 "
        "| CPU mean ms | context switches, mean |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    medians: dict[str, tuple[float, float]] = {}
    for kind, values in samples.items():
        wall, cpu = [v[0] for v in values], [v[1] for v in values]
        medians[kind] = (statistics.median(wall), statistics.median(cpu))
        print(
            f"| {kind} ({len(values)}) | {medians[kind][0]:.3f} | {_p90(wall):.3f} | "
            f"{medians[kind][1]:.3f} | {_p90(cpu):.3f} | {statistics.fmean(cpu):.3f} | "
            f"{statistics.fmean(v[2] for v in values):.1f} |"
        )
    sync, async_ = medians[KINDS[0]], medians[KINDS[1]]
    print(
        f"extra per task for @async_task: wall {async_[0] - sync[0]:.3f} ms, "
        f"CPU {async_[1] - sync[1]:.3f} ms (goal <= 0.2 ms on loop)"
    )


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def _in_process(sync_task: Any, async_task: Any, calls: int = 2000, rounds: int = 7) -> None:
    from worker.runtime import bridge

    def per_call_us(task: Any) -> tuple[float, float]:
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(calls):
            task.run(1, 2)
        return (
            (time.perf_counter_ns() - wall) / calls / 1000,
            (time.process_time_ns() - cpu) / calls / 1000,
        )

    for _ in range(500):
        sync_task.run(1, 2), async_task.run(1, 2)
    runs: dict[str, list[tuple[float, float]]] = {"sync": [], "async": []}
    for _ in range(rounds):  # alternating, so a burst of load falls on both
        runs["sync"].append(per_call_us(sync_task))
        runs["async"].append(per_call_us(async_task))
    bridge.shutdown()
    (s_wall, s_cpu), (a_wall, a_cpu) = (
        tuple(statistics.median(r[i] for r in runs[kind]) for i in (0, 1))
        for kind in ("sync", "async")
    )
    print(
        f"in process, direct calls (medians of {rounds} rounds of {calls}): "
        f"sync {s_wall:.1f} us wall / {s_cpu:.1f} us CPU, "
        f"@async_task {a_wall:.1f} us wall / {a_cpu:.1f} us CPU; "
        f"extra {(a_wall - s_wall) / 1000:.3f} ms wall, {(a_cpu - s_cpu) / 1000:.3f} ms CPU"
    )


def _wait_ready(log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while " ready." not in log_path.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker not ready; see {log_path}")
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
