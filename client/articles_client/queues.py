"""The queues and routes of the contract, declared the same way by the client and the worker.

A queue declared twice with different arguments is refused by RabbitMQ (PRECONDITION_FAILED), so
the client and the worker build their declarations here, from the broker URL alone.

On RabbitMQ (docs/design.md, section 5):
- `celery` stays a classic durable queue with no arguments, bound to a direct exchange: clients
  such as celery-node declare it that way, and RabbitMQ 3.10 refuses a redeclaration that differs.
- The work queues are durable quorum queues (replicated, poison-safe delivery counting) on one
  topic exchange, `articles`. Topic, not direct: Celery's native delayed delivery, which carries
  retries with a countdown on quorum queues, refuses direct exchanges.
On Redis the same names are plain lists.
"""

from __future__ import annotations

from typing import Any, Final

from kombu import Exchange, Queue

from articles_client import contract

AMQP_SCHEMES: Final = ("amqp://", "amqps://", "pyamqp://")
WORK_EXCHANGE: Final = "articles"


def is_amqp(broker_url: str) -> bool:
    """True for a RabbitMQ broker URL."""
    return broker_url.startswith(AMQP_SCHEMES)


def task_queues(broker_url: str) -> tuple[Queue, ...]:
    """Every queue of the contract, declared as this broker needs it."""
    if not is_amqp(broker_url):
        return tuple(Queue(name, routing_key=name) for name in contract.WORK_QUEUES)
    work = Exchange(WORK_EXCHANGE, type="topic", durable=True)
    default = Queue(
        contract.QUEUE, Exchange(contract.QUEUE, type="direct"), routing_key=contract.QUEUE
    )
    kinds = tuple(
        Queue(name, work, routing_key=name, queue_arguments={"x-queue-type": "quorum"})
        for name in contract.WORK_QUEUES
        if name != contract.QUEUE
    )
    return (default, *kinds)


def task_routes() -> dict[str, dict[str, Any]]:
    """Each public task to the queue of its kind."""
    return {task: {"queue": queue} for task, queue in contract.ROUTES.items()}
