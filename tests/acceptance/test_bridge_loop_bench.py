"""`python -m bench` in quick mode: the benchmark runs end to end and writes its table and chart.

The figures of a smoke run mean nothing; only that every row was measured: the bare Celery app,
the sync reference, both peers (ARQ from its own virtualenv, built on first use, which is what
shows its worker imports nothing that needs kombu) and the scram rows on a private PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import DB_NAME, REDIS_DB
from tests.support.processes import ROOT

pytestmark = pytest.mark.acceptance

ROWS = (
    "tests.noop",
    "bare Celery app",
    "`process_article`, nullpool bridge",
    "plain sync task",
    "scram-sha-256 login (private PostgreSQL), nullpool",
    "scram-sha-256 login (private PostgreSQL), loop",
    "peer: taskiq",
    "peer: ARQ",
    "`process_article`, loop bridge",
    "`run_pipeline`, loop bridge",
    "direct, one connection",
    "loop bridge |",
    "worker RSS (main + children), loop",
)


def test_quick_benchmark_writes_one_table_and_a_chart(clean_redis: object, tmp_path: Path) -> None:
    env = dict(
        os.environ,
        BENCH_QUICK="1",
        BENCH_OUT=str(tmp_path),
        BENCH_DATABASE_NAME=f"{DB_NAME}_bench",
        BENCH_REDIS_DB=str(REDIS_DB),
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        # About 80 s on a loaded 2-core machine, plus about a minute to build ARQ's virtualenv.
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = (tmp_path / "results.md").read_text()
    for row in ROWS:
        assert row in results
    assert "nan" not in results
    assert (tmp_path / "results.png").stat().st_size > 10_000
