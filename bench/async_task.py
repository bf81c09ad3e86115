"""`python -m bench.async_task`: what `@async_task` costs over a plain sync task, same worker.

One prefork worker (`-c 1`) runs both tasks of `bench/tasks.py` in alternating blocks. Two
figures per kind:

- the task's run time in the worker, from `task_prerun` to `task_postrun` (`bench/tasks.py`):
  this isolates what `@async_task` adds (argument validation, the bridge crossing, the JSON
  result), since Celery's own work around the body is the same for both;
- end-to-end throughput of a block (publish, run, store the result), which is noisier;
- and, in this process, the same two task bodies called directly (`task.run(1, 2)`) many times:
  the wrapper's cost alone, without Celery's per-task work around it.

Environment: `ASYNC_BRIDGE` (default `loop`), `BENCH_TASKS` (default 2000 per block),
`BENCH_BLOCKS` (default 3 per kind), `CELERY_BROKER_URL`, `DATABASE_URL` (not used by the tasks).
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

ROOT = Path(__file__).resolve().parents[1]
CELERY = str(Path(sys.executable).with_name("celery"))
RUNTIME = re.compile(r"bench-runtime (bench\.\w+) (\d+)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ASYNC_BRIDGE", "loop")
    env.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/10")
    env.setdefault("CELERY_RESULT_BACKEND", env["CELERY_BROKER_URL"])
    env.setdefault("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/articles_test_i13")
    env["EXTRA_TASK_MODULES"] = "bench.tasks"
    return env


def main() -> int:
    env = _env()
    os.environ.update(env)
    from bench import tasks
    from worker.runtime.app import app

    count = int(os.environ.get("BENCH_TASKS", 2000))
    blocks = int(os.environ.get("BENCH_BLOCKS", 3))
    queue = f"bench.async.{uuid.uuid4().hex[:6]}"
    log_path = Path(tempfile.mkdtemp()) / "worker.log"
    args = [
        CELERY, "-A", "worker", "worker", "-l", "info", "-P", "prefork", "-c", "1", "-Q", queue,
        "-n", f"{queue}@bench", "--without-heartbeat", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        worker = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(log_path)
        throughput: dict[str, list[float]] = {"bench.sync_add": [], "bench.async_add": []}
        for task in [tasks.sync_add, tasks.async_add] * blocks:
            started = time.perf_counter()
            results = [task.apply_async((1, 2), queue=queue) for _ in range(count)]
            for result in results:
                assert result.get(timeout=120) == 3
            throughput[task.name].append(count / (time.perf_counter() - started))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    runtimes: dict[str, list[float]] = {"bench.sync_add": [], "bench.async_add": []}
    for name, micros in RUNTIME.findall(log_path.read_text()):
        runtimes[name].append(int(micros) / 1000)
    _report(env["ASYNC_BRIDGE"], runtimes, throughput)
    _in_process(tasks.sync_add, tasks.async_add)
    app.close()
    return 0


def _in_process(sync_task: Any, async_task: Any, calls: int = 5000) -> None:
    from worker.runtime import bridge

    def per_call_us(task: Any) -> float:
        for _ in range(500):
            task.run(1, 2)
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                task.run(1, 2)
            runs.append((time.perf_counter() - started) / calls * 1e6)
        return statistics.median(runs)

    sync_us, async_us = per_call_us(sync_task), per_call_us(async_task)
    bridge.shutdown()
    print(
        f"in process, direct calls: sync {sync_us:.1f} us, @async_task {async_us:.1f} us, "
        f"extra {(async_us - sync_us) / 1000:.3f} ms"
    )


def _wait_ready(log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while " ready." not in log_path.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker not ready; see {log_path}")
        time.sleep(0.2)


def _report(bridge: str, runtimes: dict[str, list[float]], tput: dict[str, list[float]]) -> None:
    load = os.getloadavg()[0]
    print(f"bridge={bridge}, prefork -c 1, {len(runtimes['bench.sync_add'])} tasks per kind")
    print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} cores")
    print("| task | run time median (ms) | p90 (ms) | throughput median (tasks/s) |")
    print("| --- | --- | --- | --- |")
    medians = {}
    for name, values in runtimes.items():
        medians[name] = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"| {name} | {medians[name]:.3f} | {p90:.3f} | {statistics.median(tput[name]):.0f} |")
    extra = medians["bench.async_add"] - medians["bench.sync_add"]
    print(f"extra run time per task for @async_task: {extra:.3f} ms (goal <= 0.2 ms on loop)")


if __name__ == "__main__":
    sys.exit(main())
