"""`rediss://` with a password: broker and result backend over TLS, certificate verified.

A private `redis-server` listens only on a TLS port with a certificate signed by a CA the test
makes with openssl; the worker and the producer must verify it (`ssl_cert_reqs=required`) and
authenticate. The password must not show up in the worker's log.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.database import fetch
from tests.support.env import service_env
from tests.support.processes import ROOT, celery_worker
from tests.support.servers import REDIS_SERVER, free_port

pytestmark = pytest.mark.acceptance

PASSWORD = "tls-s3cret-4f9a"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certificates(directory: Path) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=articles-test-ca",
        cwd=directory,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=directory,
    )
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
             cwd=directory)  # fmt: skip


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    _make_certificates(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
         "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(
            ["redis-cli", "--tls", "--cacert", "ca.crt", "-p", str(port), "-a", PASSWORD,
             "--no-auth-warning", "ping"],
            cwd=tmp_path, capture_output=True, text=True,
        ).stdout.strip() != "PONG":  # fmt: skip
            if proc.poll() is not None:
                pytest.skip("this redis-server was built without TLS support")
            assert time.monotonic() < deadline, "TLS redis did not start"
            time.sleep(0.1)
        ca = tmp_path / "ca.crt"
        yield f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_worker_and_producer_over_verified_tls_with_password(
    tls_redis_url: str, clean_db: str, tmp_path: Path
) -> None:
    env = service_env(CELERY_BROKER_URL=tls_redis_url, CELERY_RESULT_BACKEND=tls_redis_url)
    produce = (
        "from worker.producer import enqueue_ingest, enqueue_pipeline_run\n"
        "print(enqueue_ingest(title='tls', body='Over TLS. Verified.').get(timeout=30))\n"
        "print(enqueue_pipeline_run(batch_size=10).get(timeout=30))\n"
    )
    with celery_worker(env, tmp_path / "logs", concurrency=1) as worker:
        out = subprocess.run(
            [sys.executable, "-c", produce],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        log = worker.log()
    assert out.returncode == 0, out.stderr
    assert "'created': True" in out.stdout
    assert "'succeeded': 1" in out.stdout
    rows = asyncio.run(fetch(clean_db, "SELECT status, word_count FROM articles"))
    assert rows == [{"status": "done", "word_count": 3}]
    assert PASSWORD not in log
    assert PASSWORD not in out.stdout + out.stderr
