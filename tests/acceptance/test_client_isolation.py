"""What a service's own surroundings must not change: each finding of issue 12, reproduced from
a real subprocess in a directory of the service's own.

- No broker configured: a clear error naming CELERY_BROKER_URL, and no file created (the client
  never falls back to the embedded SQLite default, which no worker reads).
- A hostile `celeryconfig.py` (pickle, no late acks, another broker) in the working directory,
  and `CELERY_CONFIG_MODULE` pointing at it: neither the client nor a real
  `celery -A worker worker` started there imports it; the client sends JSON, the worker accepts
  only JSON and acks late.
- A psycopg-style `DATABASE_URL` and a `.env` naming another broker do not stop (or redirect) the
  client.
- `configure(...)` wins over Celery's own preference for the CELERY_* environment variables.
"""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Queue

from articles_client import contract
from tests.integration.helpers import sql
from tests.support.env import BROKER_URL, REDIS_URL, service_env
from tests.support.processes import Proc, celery_worker
from worker.runtime.app import app

pytestmark = pytest.mark.acceptance

PYTHON = sys.executable
# Nothing listens here: a client that used this URL would fail to publish.
DEAD_REDIS = "redis://127.0.0.1:6390/0"


def python(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def bare_env(**variables: str) -> dict[str, str]:
    """What a service's process may have: no project variables unless given."""
    return {"PATH": "/usr/bin:/bin", **variables}


@pytest.mark.parametrize("module", ["articles_client.producer", "worker.producer"])
def test_no_broker_configured_is_a_clear_error_and_creates_nothing(
    module: str, tmp_path: Path
) -> None:
    done = python(
        f"""
        from {module} import enqueue_ingest
        print(enqueue_ingest(title="x", body="y z").id)
        """,
        tmp_path,
        bare_env(),
    )
    assert done.returncode != 0
    assert done.stdout == ""
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("articles_client.errors.ConfigurationError: CELERY_BROKER_URL is")
    assert "never falls back to a local file" in last_line
    assert list(tmp_path.iterdir()) == []  # no ./var/, no SQLite file


def test_a_psycopg_database_url_and_a_dotenv_do_not_touch_the_client(
    live_worker: Any, tmp_path: Path
) -> None:
    # The service's own .env names another broker: the client reads no .env.
    (tmp_path / ".env").write_text(f"CELERY_BROKER_URL={DEAD_REDIS}\nDATABASE_URL=mysql://x/y\n")
    done = python(
        """
        from articles_client.producer import enqueue_ingest
        print(enqueue_ingest(title="psycopg service", body="a b c").get(timeout=60)["created"])
        """,
        tmp_path,
        bare_env(
            DATABASE_URL="postgresql://app:pw@db.internal:5432/service",
            CELERY_BROKER_URL=BROKER_URL,
            CELERY_RESULT_BACKEND=REDIS_URL,
        ),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert sql("SELECT title FROM articles") == [{"title": "psycopg service"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_configure_wins_over_celery_environment_variables(live_worker: Any, tmp_path: Path) -> None:
    # Celery itself prefers these variables to any configured URL (celery/app/utils.py).
    env = bare_env(
        CELERY_BROKER_URL=DEAD_REDIS,
        CELERY_BROKER_WRITE_URL=DEAD_REDIS,
        CELERY_RESULT_BACKEND=DEAD_REDIS,
    )
    done = python(
        f"""
        import json
        import articles_client
        from articles_client.producer import enqueue_ingest
        app = articles_client.configure(broker_url="{BROKER_URL}", result_backend="{REDIS_URL}")
        result = enqueue_ingest(title="configured", body="a b c")
        print(json.dumps({{"result": result.get(timeout=60), "backend": result.backend.url}}))
        """,
        tmp_path,
        env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["result"]["created"] is True
    assert report["backend"] == REDIS_URL
    assert sql("SELECT title FROM articles") == [{"title": "configured"}]


HOSTILE_CONFIG = f"""
from pathlib import Path

# Proof of import: whoever imports this module leaves a file behind.
Path(__file__).with_name("celeryconfig-was-imported").touch()

broker_url = "{DEAD_REDIS}"
result_backend = "{DEAD_REDIS}"
task_serializer = "pickle"
result_serializer = "pickle"
accept_content = ["pickle", "json"]
task_acks_late = False
task_default_queue = "somewhere-else"
"""


class _Marker:
    """Unpickling this creates a file: proof that the worker ran code from a pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def _publish_pickle(marker: Path) -> str:
    task_id = str(uuid.uuid4())
    headers = {"lang": "py", "task": contract.INGEST, "id": task_id, "root_id": task_id}
    with app.producer_or_acquire() as producer:
        producer.publish(
            pickle.dumps(((_Marker(marker),), {}, {})),
            routing_key=contract.QUEUE,
            exchange="",
            headers=headers,
            content_type="application/x-python-serialize",
            content_encoding="binary",
        )
    return task_id


def test_a_hostile_celeryconfig_changes_neither_client_nor_worker(
    subprocess_workers_only: None, redis_client: redis.Redis, tmp_path: Path
) -> None:
    service = tmp_path / "service"
    service.mkdir()
    (service / "celeryconfig.py").write_text(HOSTILE_CONFIG)
    # No test task modules: the worker imports only what an installed worker would.
    env = service_env(CELERY_CONFIG_MODULE="celeryconfig", EXTRA_TASK_MODULES="")

    # The client, run in the service's directory (first on sys.path).
    task_id = str(uuid.uuid4())
    done = python(
        f"""
        from articles_client.producer import enqueue_ingest
        enqueue_ingest(title="hostile", body="a b c", task_id="{task_id}")
        """,
        service,
        env,
    )
    assert done.returncode == 0, done.stderr
    # What it put on the wire, looked at before any worker runs and put back for the worker
    # below (Redis or RabbitMQ alike: kombu hands back the message as the broker holds it).
    with Connection(BROKER_URL) as conn:
        queue = Queue(contract.ROUTES[contract.INGEST], no_declare=True, channel=conn.channel())
        message = queue.get(no_ack=False)
        assert message is not None
        message.requeue()
    assert message.content_type == "application/json"
    assert message.headers["id"] == task_id
    assert message.headers[contract.CONTRACT_HEADER] == contract.CONTRACT_VERSION
    args, kwargs, _ = json.loads(message.body)
    assert (args, kwargs) == ([], {"title": "hostile", "body": "a b c"})

    marker = tmp_path / "unpickled"
    pickled = _publish_pickle(marker)
    with celery_worker(env, tmp_path / "logs", cwd=service) as worker:
        assert app.AsyncResult(task_id).get(timeout=60)["created"] is True
        replies = app.control.inspect(destination=[worker_node(worker)], timeout=10).conf(
            with_defaults=True
        )
        log = worker.log()
    (conf,) = replies.values()
    assert conf["task_acks_late"] is True
    assert conf["accept_content"] == ["json"]
    assert conf["task_serializer"] == "json"
    assert conf["task_default_queue"] == contract.QUEUE
    assert "Refusing to deserialize untrusted content of type pickle" in log, pickled
    assert not marker.exists(), "the worker unpickled a message"
    assert not (service / "celeryconfig-was-imported").exists()
    assert sql("SELECT title FROM articles") == [{"title": "hostile"}]


def worker_node(worker: Proc) -> str:
    """The node name a `celery_worker` subprocess answers remote control as (`-n name@%h`)."""
    return f"{worker.name}@{socket.gethostname()}"
