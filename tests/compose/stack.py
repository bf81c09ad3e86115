"""Drive one docker-compose project: commands, SQL in its PostgreSQL, waits on its services.

Every project gets a unique name, its own secrets and a free Flower port, so several runs (and the
host's own servers on 5432/6379/5555) never collide. The environment given to docker-compose is
built from scratch: nothing of the test run's own settings (DATABASE_URL, ...) leaks into it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# Short timings so crash recovery takes seconds, not the production defaults' minutes.
# Redelivery after a SIGKILL waits for the visibility timeout plus one restore sweep.
FAST_TIMINGS = {
    "TASK_SOFT_TIME_LIMIT": "20",
    "TASK_TIME_LIMIT": "25",
    "BROKER_VISIBILITY_TIMEOUT": "30",
    "BROKER_UNACKED_RESTORE_INTERVAL": "5",
    "CLAIM_LEASE_SECONDS": "30",  # must exceed TASK_TIME_LIMIT
    "PIPELINE_TIME_BUDGET_SECONDS": "15",  # must stay under TASK_SOFT_TIME_LIMIT
    "REAPER_INTERVAL_SECONDS": "10",
    # Beat's pipeline runs would finish whatever a lost message left behind and hide the loss.
    "PIPELINE_INTERVAL_SECONDS": "3600",
}


class ComposeError(AssertionError):
    """A docker-compose command failed; the message holds its output."""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Call `probe` until it returns something other than None or False; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None and last is not False:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class ComposeStack:
    """One docker-compose project of this repository's docker-compose.yml."""

    project: str
    flower_port: int = field(default_factory=free_port)
    postgres_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    app_db_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    redis_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    flower_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    timings: Mapping[str, str] = field(default_factory=lambda: dict(FAST_TIMINGS))
    # Override files after docker-compose.yml, e.g. ("docker-compose.rabbitmq.yml",).
    overrides: tuple[str, ...] = ()
    rabbitmq_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST")}
        return {
            **base,
            **self.timings,
            "COMPOSE_PROJECT_NAME": self.project,
            "POSTGRES_PASSWORD": self.postgres_password,
            "APP_DB_PASSWORD": self.app_db_password,
            "REDIS_PASSWORD": self.redis_password,
            "FLOWER_BASIC_AUTH": f"admin:{self.flower_password}",
            "FLOWER_PORT": str(self.flower_port),
            "RABBITMQ_PASSWORD": self.rabbitmq_password,
        }

    @property
    def base_command(self) -> list[str]:
        files = ["docker-compose.yml", *self.overrides]
        return ["docker-compose", "-p", self.project, *(f"--file={ROOT / f}" for f in files)]

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        """Run `docker-compose -p <project> <args>`; return stdout (stderr too on failure)."""
        cmd = [*self.base_command, *args]
        done = subprocess.run(
            cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise ComposeError(
                f"{' '.join(args)} exited {done.returncode}\n{done.stdout[-4000:]}\n"
                f"{done.stderr[-4000:]}"
            )
        return done.stdout

    def exec(self, service: str, *args: str, timeout: float = 300) -> str:
        """Run a command inside a running container of `service` (its first replica)."""
        return self.compose("exec", "-T", service, *args, timeout=timeout)

    def sql(self, query: str) -> list[list[str]]:
        """Rows of `query`, run by psql inside the postgres container (tab-separated fields)."""
        out = self.exec(
            "postgres", "psql", "-U", "articles", "-d", "articles", "-XAtF\t", "-c", query
        )
        return [line.split("\t") for line in out.splitlines() if line]

    def psql_session(self) -> subprocess.Popen[str]:
        """An interactive psql inside the postgres container: write SQL to its stdin."""
        cmd = [
            *self.base_command,
            "exec",
            "-T",
            "postgres",
            "psql",
            "-U",
            "articles",
            "-d",
            "articles",
            "-XAtq",
        ]
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def container_ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def inspect(self, container: str) -> dict[str, object]:
        done = subprocess.run(
            ["docker", "inspect", container], capture_output=True, text=True, check=True
        )
        info: dict[str, object] = json.loads(done.stdout)[0]
        return info

    def logs_since(self, container: str, since: str) -> str:
        done = subprocess.run(
            ["docker", "logs", "--since", since, container],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout + done.stderr

    # What the tests do to the articles, from inside the stack.

    def reset_articles(self, count: int) -> None:
        """Empty the tables, then seed `count` pending articles with the `articles` command."""
        self.sql("TRUNCATE articles, pipeline_runs RESTART IDENTITY CASCADE")
        self.exec("worker", "articles", "seed", str(count))

    def enqueue_each(self, ids: Sequence[int]) -> None:
        """Send one articles.process_article per id with the producer, from a worker container."""
        script = (
            "import sys\n"
            "from worker.producer import enqueue_process_article\n"
            "for i in sys.argv[1:]:\n"
            "    enqueue_process_article(article_id=int(i))\n"
        )
        self.exec("worker", "python", "-c", script, *map(str, ids))

    def article_ids(self) -> list[int]:
        return [int(row[0]) for row in self.sql("SELECT id FROM articles ORDER BY id")]

    def status_counts(self) -> dict[str, int]:
        rows = self.sql("SELECT status, count(*) FROM articles GROUP BY status")
        return {status: int(n) for status, n in rows}

    def times_processed(self) -> dict[int, int]:
        """How many articles were processed how many times: {times: articles}."""
        rows = self.sql("SELECT times_processed, count(*) FROM articles GROUP BY 1")
        return {int(times): int(n) for times, n in rows}

    def wait_all_done(self, count: int, timeout: float) -> None:
        """Wait until exactly `count` articles exist and all are done; name the counts if not."""
        seen: list[dict[str, int]] = [{}]

        def all_done() -> bool:
            seen[0] = self.status_counts()
            return seen[0] == {"done": count}

        try:
            wait_for(f"{count} articles done", all_done, timeout, every=2)
        except AssertionError:
            raise AssertionError(f"not all {count} articles done: {seen[0]}") from None


# Helpers of the stack tests (Redis and RabbitMQ variants).


def health(stack: ComposeStack, service: str) -> str:
    """'healthy', 'starting', ... for services with a health check, else the container state."""
    state = stack.inspect(stack.container_ids(service)[0])["State"]
    assert isinstance(state, dict)
    if "Health" in state:
        return str(state["Health"]["Status"])
    return str(state["Status"])


def hold_article_locks(stack: ComposeStack) -> subprocess.Popen[str]:
    """Lock every article row in an open transaction, so tasks that reach a row block there.

    Returns the psql process; `release` commits. Lets a test crash things while tasks are
    provably in flight, instead of racing a run that takes two seconds.
    """
    holder = stack.psql_session()
    assert holder.stdin is not None
    holder.stdin.write(
        "SET application_name = 'lock_holder';\n"
        "BEGIN;\nSELECT count(*) FROM (SELECT id FROM articles FOR UPDATE) AS locked;\n"
    )
    holder.stdin.flush()
    wait_for(
        "the lock holder's transaction",
        lambda: (
            stack.sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'lock_holder' AND state = 'idle in transaction'"
            )
            == [["1"]]
        ),
        timeout=60,
    )
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("COMMIT;\n")
    holder.stdin.close()
    holder.wait(timeout=60)


def fault_mid_run(stack: ComposeStack, articles: int, *fault: str) -> None:
    """Enqueue `articles` fresh article jobs, wait until tasks provably block on their rows, then
    run `docker-compose <fault>` (kill the worker, restart Redis) before releasing the rows."""
    stack.reset_articles(articles)
    holder = hold_article_locks(stack)
    try:
        stack.enqueue_each(stack.article_ids())
        wait_blocked_tasks(stack)
        stack.compose(*fault)
    finally:
        release(holder)


def wait_blocked_tasks(stack: ComposeStack) -> int:
    """Wait until a worker's task waits on a locked article; return how many do."""
    return wait_for(
        "a task blocked on a locked article",
        lambda: (
            int(
                stack.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[
                    0
                ][0]
            )
            or None
        ),
        timeout=120,
    )
