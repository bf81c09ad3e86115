"""Real processes for acceptance and reliability tests: `celery -A worker ...` as subprocesses.

Each runs in its own session (process group), so a test can SIGKILL the whole worker, children
included, as an operator's `kill -9` or an OOM kill would.
"""

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

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


@dataclass
class Proc:
    """A running subprocess with its log file."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    name: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before {needle!r}:\n{self.log()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {needle!r} within {timeout}s:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handlers run."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (warm shutdown), then SIGKILL if it does not exit in `timeout` seconds."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def children(self) -> list[int]:
        """Pids of the direct children (prefork pool processes)."""
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]


def spawn(args: list[str], env: dict[str, str], log_dir: Path, name: str, cwd: Path = ROOT) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    # The child keeps its own copy of the descriptor; ours is closed at once.
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(popen=popen, log_path=log_path, name=name)


@contextlib.contextmanager
def celery_worker(
    env: dict[str, str],
    log_dir: Path,
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    name: str | None = None,
    extra_args: tuple[str, ...] = (),
    ready_timeout: float = 60,
    cwd: Path = ROOT,
    cluster_steps: bool = False,
) -> Iterator[Proc]:
    """Run `celery -A worker worker` until the block ends; yields once it reports ready.

    Heartbeat, mingle and gossip are off unless `cluster_steps` (as a user's worker runs them)."""
    node = name or f"w{uuid.uuid4().hex[:6]}"
    quiet = () if cluster_steps else ("--without-heartbeat", "--without-mingle", "--without-gossip")
    args = [
        CELERY, "-A", "worker", "worker", "-l", "info", "-P", pool, "-c", str(concurrency),
        "-n", f"{node}@%h", *quiet, *extra_args,
    ]  # fmt: skip
    proc = spawn(args, env, log_dir, node, cwd)
    try:
        proc.wait_for_log(" ready.", timeout=ready_timeout)
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def celery_beat(
    env: dict[str, str], log_dir: Path, schedule: Path, cwd: Path = ROOT
) -> Iterator[Proc]:
    """Run `celery -A worker beat` with its schedule file at `schedule`."""
    args = [CELERY, "-A", "worker", "beat", "-l", "info", "-s", str(schedule)]
    proc = spawn(args, env, log_dir, "beat", cwd)
    try:
        proc.wait_for_log("beat: Starting", timeout=30)
        yield proc
    finally:
        proc.stop()
