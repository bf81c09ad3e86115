"""The kombu and Celery internals the broker-restart fixes patch exist in the installed versions.

The fixes wrap private methods (worker/runtime/kombu_fixes.py, redelivery.py, started_state.py);
the versions are pinned to the range they were verified with, and this fails loudly if an upgrade
moves them.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from celery import bootsteps
from celery.backends.base import Backend
from celery.concurrency.asynpool import AsynPool
from kombu.transport import redis as redis_transport
from kombu.transport.virtual import base as virtual

from worker.runtime import kombu_fixes, redelivery
from worker.runtime.app import app

pytestmark = pytest.mark.unit


def _minor(package: str) -> tuple[int, int]:
    major, minor = version(package).split(".")[:2]
    return int(major), int(minor)


def test_installed_versions_are_the_verified_ones() -> None:
    assert _minor("kombu") == (5, 7)
    assert _minor("celery") == (5, 7)


@pytest.mark.parametrize(
    ("owner", "name", "params"),
    [
        (redis_transport.Channel, "_connparams", ["self", "asynchronous"]),
        (redis_transport.QoS, "ack", ["self", "delivery_tag"]),
        (redis_transport.QoS, "reject", ["self", "delivery_tag", "requeue"]),
        (redis_transport.QoS, "append", ["self", "message", "delivery_tag"]),
        (redis_transport.QoS, "restore_by_tag", ["self", "tag", "client", "leftmost"]),
        (redis_transport.QoS, "restore_unacked", ["self", "client"]),
        (redis_transport.QoS, "_remove_from_indices", ["self", "delivery_tag", "pipe"]),
        (virtual.QoS, "restore_unacked_once", ["self", "stderr"]),
        (virtual.QoS, "_flush", ["self"]),
        (redis_transport.Channel, "_do_restore_message", None),
        (bootsteps.ConsumerStep, "_close", ["self", "c", "cancel_consumers"]),
        (AsynPool, "_track_child_process", ["self", "proc", "hub"]),
        (Backend, "store_result", None),
    ],
)
def test_patched_internals_have_the_expected_signature(
    owner: type, name: str, params: list[str] | None
) -> None:
    func = inspect.unwrap(getattr(owner, name))
    if params is not None:
        assert list(inspect.signature(func).parameters) == params


def test_install_is_idempotent_and_adds_the_consumer_step() -> None:
    kombu_fixes.install()
    first = redis_transport.QoS.ack
    kombu_fixes.install()
    redelivery.install(app)
    assert redis_transport.QoS.ack is first
    assert redelivery.RedeliverOnReconnect in app.steps["consumer"]
