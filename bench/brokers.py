"""`python -m bench.brokers`: Redis against RabbitMQ as the broker, side by side in one run.

Each broker gets a `-c 2` prefork worker (loop bridge) consuming `articles.process`, a quorum
queue on RabbitMQ (the production declaration) and a list on Redis; results are on Redis for
both. Rows: an empty task and `process_article`, queued while the worker is paused, rates taken
over the middle 80% of completions; repeats interleave the brokers so load affects both alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import redis
from celery import Celery

from articles_client import contract
from articles_client.config import ClientConfig
from bench import measure
from bench.config import load
from bench.workers import ROOT, running_worker

VHOST = "articles_bench"


def _amqp_url() -> str:
    for args in (("add_vhost", VHOST), ("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")):
        subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60)
    return f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"


def main() -> int:
    cfg = load()
    brokers = {"redis": cfg.redis_url, "rabbitmq": _amqp_url()}
    client = redis.Redis.from_url(cfg.redis_url)
    measure.recreate_database(cfg)
    samples: dict[str, list[float]] = defaultdict(list)
    os.environ.pop("CELERY_BROKER_URL", None)  # Celery prefers it to an app's configuration
    os.environ["CELERY_RESULT_BACKEND"] = cfg.redis_url
    for repeat in range(cfg.repeats):
        for broker, url in brokers.items():
            app = Celery(f"bench-{broker}", set_as_current=False)
            app.conf.update(ClientConfig(url, cfg.redis_url).celery_settings())
            env = {**cfg.worker_env("loop"), "CELERY_BROKER_URL": url}
            with running_worker(
                app, env, name=broker, concurrency=cfg.concurrency,
                log_dir=ROOT / "var" / "bench", queue=contract.PROCESS_QUEUE,
            ) as worker:  # fmt: skip
                samples[f"{broker} empty task"].append(
                    measure.task_throughput(worker, client, "tests.noop", [{}] * cfg.noop_tasks)
                )
                count = cfg.article_tasks_loop
                measure.seed(cfg, count)
                kwargs = [{"article_id": i} for i in range(1, count + 1)]
                samples[f"{broker} process_article"].append(
                    measure.task_throughput(worker, client, contract.PROCESS_ARTICLE, kwargs)
                )
            app.close()
            print(f"repeat {repeat + 1}: {broker} measured", file=sys.stderr)
    print(f"| Row (tasks/s, -c {cfg.concurrency}, loop bridge) | Median | Min-max |")
    print("| --- | --- | --- |")
    for row, values in samples.items():
        print(f"| {row} | {statistics.median(values):.0f} | {min(values):.0f}-{max(values):.0f} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} ({time.strftime('%Y-%m-%d')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
