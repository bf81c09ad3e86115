"""The client distribution, built from client/ and installed alone into a fresh venv: it carries
no SQLAlchemy, no database driver and no Flower, and a job it enqueues runs on a real worker."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import sql
from tests.support.client_venv import build_client_venv, run
from tests.support.env import BROKER_URL, REDIS_URL

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the client's wheel (and what it depends on) installed."""
    return build_client_venv(tmp_path_factory.mktemp("client"))


def test_the_client_installs_without_database_or_monitoring_packages(client_venv: Path) -> None:
    listed = run([str(client_venv / "bin" / "pip"), "list", "--format=json"]).stdout
    installed = {entry["name"].lower() for entry in json.loads(listed)}
    assert {"articles-worker-client", "celery", "pydantic"} <= installed
    assert installed.isdisjoint({"sqlalchemy", "asyncpg", "aiosqlite", "flower", "alembic"})


def test_a_job_enqueued_from_the_client_venv_runs_on_a_real_worker(
    client_venv: Path, live_worker: Any, tmp_path: Path
) -> None:
    task_id = str(uuid.uuid4())
    code = f"""
        from articles_client.producer import enqueue_ingest
        result = enqueue_ingest(title="from the client venv", body="a b c", task_id="{task_id}")
        print(result.get(timeout=60)["created"])
    """
    # An empty directory, the broker and result URLs only: what a service's process has.
    env = {
        "PATH": "/usr/bin:/bin",
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
    }
    done = run([str(client_venv / "bin" / "python"), "-c", textwrap.dedent(code)],
                cwd=tmp_path, env=env)  # fmt: skip
    assert done.stdout.strip() == "True"
    assert sql("SELECT title FROM articles") == [{"title": "from the client venv"}]
    assert list(tmp_path.iterdir()) == []


def test_without_the_outbox_extra_the_ddl_command_says_what_to_install(
    client_venv: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(client_venv / "bin" / "articles-client"), "outbox", "ddl"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'articles-worker-client[outbox]'" in done.stderr
    assert "Traceback" not in done.stderr
