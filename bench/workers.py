"""Worker subprocesses for the benchmark: `celery -A worker worker`, one queue each."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

ROOT = Path(__file__).resolve().parents[1]
CELERY = str(Path(sys.executable).with_name("celery"))


@dataclass
class Worker:
    app: Celery
    popen: subprocess.Popen[bytes]
    node: str
    queue: str
    log_path: Path

    def pause(self) -> None:
        """Stop consuming, so a batch can be queued before the clock starts."""
        self.app.control.cancel_consumer(self.queue, destination=[self.node], reply=True)

    def resume(self) -> None:
        self.app.control.add_consumer(self.queue, destination=[self.node], reply=True)

    def rss_mb(self) -> float:
        """Resident memory of the whole worker: the main process and its pool children."""
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.popen.pid)], capture_output=True, text=True
        ).stdout
        pids = [self.popen.pid, *(int(p) for p in out.split())]
        return sum(_rss_kb(pid) for pid in pids) / 1024


def _rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def running_worker(
    app: Celery,
    env: dict[str, str],
    *,
    name: str,
    concurrency: int,
    log_dir: Path,
    queue: str | None = None,
    app_module: str = "worker",
) -> Iterator[Worker]:
    """A prefork worker of `app_module`'s app consuming only its own queue (`bench.<name>` unless
    given), logging warnings only (every row alike)."""
    node = f"{name}-{uuid.uuid4().hex[:6]}@bench"
    queue = queue or f"bench.{name}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    args = [
        CELERY, "-A", app_module, "worker", "-l", "warning", "-P", "prefork",
        "-c", str(concurrency), "-n", node, "-Q", queue,
        "--without-heartbeat", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = Worker(app=app, popen=popen, node=node, queue=queue, log_path=log_path)
    try:
        _wait_ready(worker)
        yield worker
    finally:
        stop_group(popen)


def _wait_ready(worker: Worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.popen.poll() is not None:
            raise RuntimeError(f"worker {worker.node} exited; see {worker.log_path}")
        if worker.app.control.ping(destination=[worker.node], timeout=0.5):
            return
    raise RuntimeError(f"worker {worker.node} not ready in {timeout}s; see {worker.log_path}")


def stop_group(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group `popen` leads; SIGKILL it if it has not gone in 30 s."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=30)
