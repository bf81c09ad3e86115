"""`python -m bench.async_task_instructions`: instructions per `@async_task` call, under callgrind.

A count of executed instructions does not depend on the machine's load, unlike any time. Three
runs of this module under `valgrind --tool=callgrind` call the bench tasks' bodies in process
(`task.run(1, 2)`, as `bench.async_task` does): none, `BENCH_CALLS` of the sync one, and as many of
the `@async_task` one, after the same warm-up. The difference to the first run, divided by the
calls, is the instructions per call of each (interpreter start and imports cancel out). Slow:
callgrind runs Python some 50 times slower, a few minutes per run. Needs `valgrind`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.config import load as load_config

ROOT = Path(__file__).resolve().parents[1]
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _calls(kind: str, calls: int) -> None:
    """The measured program: warm up both tasks, then call one of them `calls` times."""
    from bench import tasks
    from worker.runtime import bridge

    task = tasks.async_add if kind == "async" else tasks.sync_add
    for _ in range(50):  # the bridge's loop thread and first-call caches
        tasks.sync_add.run(1, 2)
        tasks.async_add.run(1, 2)
    for _ in range(calls):
        task.run(1, 2)
    bridge.shutdown()


def _instructions(kind: str, calls: int, env: dict[str, str]) -> int:
    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    args += ["-m", "bench.async_task_instructions", kind, str(calls)]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    match = REFS.search(done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(match[1].replace(",", ""))


def main() -> int:
    cfg = load_config()
    env = cfg.worker_env("loop")
    env["EXTRA_TASK_MODULES"] = "bench.tasks"
    calls = int(os.environ.get("BENCH_CALLS", 200 if cfg.quick else 2000))
    runs = [("sync", 0), ("sync", calls), ("async", calls)]
    with ThreadPoolExecutor(len(runs)) as pool:  # counts do not depend on running side by side
        base, sync, async_ = pool.map(lambda run: _instructions(*run, env), runs)
    per_sync, per_async = (sync - base) / calls, (async_ - base) / calls
    print(f"callgrind, loop bridge, {calls} calls each, in process (instructions per call):")
    print(f"sync {per_sync:,.0f}; @async_task {per_async:,.0f}; extra {per_async - per_sync:,.0f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3:
        _calls(sys.argv[1], int(sys.argv[2]))
    else:
        sys.exit(main())
