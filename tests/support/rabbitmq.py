"""The shared RabbitMQ node, through a vhost of this test run's own; and private nodes."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kombu import Connection
from kombu.exceptions import ChannelError

from articles_client import contract
from tests.support.servers import free_port

RABBITMQCTL = shutil.which("rabbitmqctl", path="/usr/lib/rabbitmq/bin") or "rabbitmqctl"
RABBITMQ_SERVER = shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin") or "rabbitmq-server"


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)


def recreate_vhost(vhost: str, user: str = "guest") -> None:
    """Drop `vhost` with everything in it, create it empty, and let `user` use it."""
    _ctl("delete_vhost", vhost)  # absent the first time: not an error worth reporting
    for args in (("add_vhost", vhost), ("set_permissions", "-p", vhost, user, ".*", ".*", ".*")):
        done = _ctl(*args)
        assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stderr}"


def purge(url: str, queues: tuple[str, ...] = contract.WORK_QUEUES) -> None:
    """Empty the work queues (those not declared yet are skipped)."""
    with Connection(url) as conn:
        for name in queues:
            channel = conn.channel()
            try:
                channel.queue_purge(name)
            except ChannelError:
                pass  # NOT_FOUND closes the channel: a fresh one for the next queue
            finally:
                channel.close()


class PrivateRabbit:
    """A RabbitMQ node of our own (own node name, ports and data directory), for tests that stop
    it or need server settings the shared node does not have.

    It runs as the `rabbitmq` OS user, whose home holds the Erlang cookie `rabbitmqctl` needs.
    """

    def __init__(self, *, consumer_timeout_ms: int | None = None) -> None:
        self.port = free_port()
        self.node = f"articles-test-{self.port}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="private-rabbit-"))
        shutil.chown(self.dir, "rabbitmq", "rabbitmq")
        conf = f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        if consumer_timeout_ms is not None:
            conf += f"consumer_timeout = {consumer_timeout_ms}\n"
        (self.dir / "rabbitmq.conf").write_text(conf)
        (self.dir / "enabled_plugins").write_text("[].\n")
        # RabbitMQ checks consumer timeouts on its channel tick (every 60 s by default): tick
        # every second so a short timeout shows within a test.
        (self.dir / "advanced.config").write_text("[{rabbit, [{channel_tick_interval, 1000}]}].\n")
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, vhost: str = "") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": "/var/lib/rabbitmq",
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "rabbitmq", "--", RABBITMQCTL, "-n", self.node, *args],
            env=self._env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def start(self) -> None:
        log = (self.dir / "server.out").open("ab")
        self._proc = subprocess.Popen(
            ["runuser", "-u", "rabbitmq", "--", RABBITMQ_SERVER],
            env=self._env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
        )  # fmt: skip
        log.close()
        # `wait` polls for the pid file, then for the broker application to have started.
        done = self.ctl("wait", str(self.dir / "rabbit.pid"), "--timeout", "120")
        if done.returncode != 0:
            raise RuntimeError(f"private RabbitMQ {self.node} did not start: {done.stderr}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.ctl("stop")
            self._proc.wait(timeout=60)
        self._proc = None

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop()
        if self._proc is not None:
            self._proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_rabbit(*, consumer_timeout_ms: int | None = None) -> Iterator[PrivateRabbit]:
    server = PrivateRabbit(consumer_timeout_ms=consumer_timeout_ms)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
