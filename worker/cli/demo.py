"""`articles demo`: the whole system on this machine, end to end, in one command.

Migrates, starts a real worker and beat as subprocesses, seeds articles, enqueues a pipeline run
through the producer, follows it with a progress bar, prints a summary and stops the processes.
Success means every seeded article ended `done`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from articles_client.contract import IngestPayload
from articles_client.errors import ArticlesError
from db.migrate import upgrade
from worker.cli import admin, backend, seed
from worker.runtime import bridge
from worker.runtime.settings import VAR_DIR, Settings

READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
SETTLE_TIMEOUT = 60.0


class DemoFailed(ArticlesError):
    """A demo process did not start, or exited while the demo was running."""


class Process:
    """A `celery` subprocess with its log in ./var/; stopped with SIGTERM (a warm shutdown)."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        # Own session: Ctrl-C in the terminal reaches only the demo, which stops them in order.
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log_path.read_text(errors="replace"):
            if self.popen.poll() is not None:
                raise DemoFailed(
                    f"{self.name} exited ({self.popen.returncode}); see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise DemoFailed(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


class Demo:
    def __init__(
        self,
        settings: Settings,
        *,
        articles: int,
        batch_size: int,
        concurrency: int,
        timeout: float,
        console: Console,
    ) -> None:
        self.settings = settings
        self.articles = articles
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.timeout = timeout
        self.console = console

    def run(self) -> int:
        self.console.print(f"[bold]1/5[/] migrating {backend.describe(self.settings)['database']}")
        upgrade(self.settings.database_url)
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        with self._processes():
            ids = self._seed()
            summary = self._pipeline(ids)
        self.console.print(_summary_table(summary))
        ok = summary["done"] == len(ids)
        self.console.print(
            "[green]demo succeeded: every seeded article is done[/]"
            if ok
            else f"[red]demo failed: {len(ids) - summary['done']} seeded article(s) not done[/]"
        )
        return 0 if ok else 1

    @contextlib.contextmanager
    def _processes(self) -> Iterator[None]:
        embedded = backend.kind(self.settings) == "embedded"
        self.console.print(f"[bold]2/5[/] starting a worker (-c {self.concurrency}) and beat")
        started: list[Process] = []
        try:
            started.append(
                Process("worker", self._worker_args(embedded), VAR_DIR / "demo-worker.log")
            )
            started[0].wait_for(" ready.", READY_TIMEOUT)
            schedule = VAR_DIR / "demo-celerybeat-schedule"
            for stale in VAR_DIR.glob(f"{schedule.name}*"):
                stale.unlink()  # a stale schedule would fire every entry at once on start
            beat_args = ["beat", "-l", "info", "-s", str(schedule)]
            started.append(Process("beat", beat_args, VAR_DIR / "demo-beat.log"))
            started[1].wait_for("beat: Starting", READY_TIMEOUT)
            self.console.print(f"    logs: {started[0].log_path}, {started[1].log_path}")
            yield
        finally:
            for process in reversed(started):
                code = process.stop()
                self.console.print(f"    {process.name} stopped (exit status {code})")

    def _worker_args(self, embedded: bool) -> list[str]:
        args = ["worker", "-l", "info", "-c", str(self.concurrency), "-n", f"demo{os.getpid()}@%h"]
        # The SQLAlchemy transport has no broadcast: skip the features that need it.
        return [*args, "--without-mingle", "--without-gossip"] if embedded else args

    def _seed(self) -> list[int]:
        self.console.print(f"[bold]3/5[/] seeding {self.articles} sample articles")
        payloads = [
            IngestPayload(
                title=a.title, body=a.body, source_url=a.source_url, external_id=a.external_id
            )
            for a in seed.generate(self.articles)
        ]
        inserted: admin.Inserted = bridge.run_in_session(
            functools.partial(admin.insert_articles, articles=payloads)
        )
        return inserted.created

    def _pipeline(self, ids: list[int]) -> dict[str, Any]:
        from worker.cli.progress import wait_for_run
        from worker.producer import enqueue_pipeline_run

        self.console.print(f"[bold]4/5[/] enqueuing a pipeline run (batch size {self.batch_size})")
        started = time.monotonic()
        backend.configure_client(self.settings)
        result = enqueue_pipeline_run(batch_size=self.batch_size)
        outcome = wait_for_run(result, timeout=self.timeout, console=self.console)
        # Beat's own pipeline ticks may have taken some of the seeded articles: wait for them too.
        counts = self._settled(ids)
        elapsed = time.monotonic() - started
        self.console.print("[bold]5/5[/] stopping the worker and beat")
        return {
            "seeded": len(ids),
            "done": counts["done"],
            "failed": counts["failed"],
            "unfinished": counts["pending"] + counts["processing"],
            "run_id": outcome.get("run_id"),
            "seconds": elapsed,
        }

    def _settled(self, ids: list[int]) -> dict[str, int]:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            counts: dict[str, int] = bridge.run_in_session(
                functools.partial(admin.statuses_of, ids=ids)
            )
            if counts["pending"] + counts["processing"] == 0 or time.monotonic() > deadline:
                return counts
            time.sleep(0.5)


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table("", "", title="Demo summary", show_header=False)
    seconds = float(summary["seconds"])
    rows = [
        ("pipeline run", str(summary["run_id"])),
        ("articles seeded", str(summary["seeded"])),
        ("articles done", str(summary["done"])),
        ("articles failed", str(summary["failed"])),
        ("articles unfinished", str(summary["unfinished"])),
        ("run time (enqueue → all done)", f"{seconds:.2f} s"),
        ("throughput", f"{summary['done'] / seconds:.0f} articles/s" if seconds else "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
