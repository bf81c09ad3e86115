"""A private PgBouncer in transaction pooling mode, in front of the shared PostgreSQL.

Debian's `pgbouncer` package (1.18 here: no named prepared statements in transaction mode) must be
installed. PgBouncer refuses to run as root, so as root it runs as the `postgres` OS user. Its pool
is deliberately smaller than the number of clients, so consecutive transactions of one client do
land on different server connections: the case that breaks asyncpg's prepared statements.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# The README's recommended settings: without them, every prepared statement of a `nullpool`
# connection stays on the server connection that ran it (measured: 2,085 left on one server
# connection after 2,000 sessions), until PgBouncer's server_lifetime closes it.
RECOMMENDED = "server_reset_query = DEALLOCATE ALL\nserver_reset_query_always = 1\n"


class PrivatePgBouncer:
    """`pgbouncer` on a free loopback port, forwarding every database to `upstream_port`."""

    def __init__(
        self,
        *,
        upstream_port: int = 5432,
        pool_size: int = 3,
        user: str = "postgres",
        extra_config: str = "",
    ) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.pool_size = pool_size
        self.user = user
        self.extra_config = extra_config
        self.dir = Path(tempfile.mkdtemp(prefix="private-pgbouncer-"))
        self._as_postgres = os.geteuid() == 0
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        return self.dir / "pgbouncer.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _write_config(self) -> Path:
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.upstream_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            "max_client_conn = 1000\nmax_db_connections = 0\n"
            f"logfile = {self.log_path}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
            "admin_users = postgres\nlog_connections = 0\nlog_disconnections = 0\n"
            f"{self.extra_config}"
        )
        if self._as_postgres:
            for path in (self.dir, *self.dir.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        return ini

    def start(self, timeout: float = 15) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        self._proc = subprocess.Popen(
            [*prefix, PGBOUNCER, str(self._write_config())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError(f"private pgbouncer on {self.port} did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            # SIGINT: "safe shutdown"; runuser forwards it. Then make sure.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, 2)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait(timeout=10)
        self._proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_pgbouncer(
    *, pool_size: int = 3, extra_config: str = RECOMMENDED
) -> Iterator[PrivatePgBouncer]:
    server = PrivatePgBouncer(pool_size=pool_size, extra_config=extra_config)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
