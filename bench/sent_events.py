"""`python -m bench.sent_events` (`make bench BENCH=sent_events`): what the producer's "sent"
task event costs a publish.

Two client apps, alike but for `task_send_sent_event`, publish `process_article` messages to a
queue nobody consumes, in alternating rounds so both meet the same load; each `send_task` call is
timed. The queue is deleted afterwards. `SENT_EVENTS_TASKS` (default 6,000 per side),
`SENT_EVENTS_BROKER` (default: the bench's Redis, bench/config.py).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from articles_client import contract
from articles_client.app import ClientApp, build_app
from articles_client.config import ClientConfig

ROUND = 500
QUEUE = "bench.sent_events"


def _app(broker: str, sent_event: bool) -> ClientApp:
    app = build_app(ClientConfig(broker_url=broker, result_backend=broker))
    app.conf.task_send_sent_event = sent_event
    return app


def _round(app: ClientApp, timings: list[float], first_id: int) -> None:
    for i in range(first_id, first_id + ROUND):
        began = time.perf_counter()
        app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": i}, queue=QUEUE)
        timings.append(time.perf_counter() - began)


def _row(name: str, timings: list[float]) -> str:
    ordered = sorted(timings)
    p95 = ordered[int(len(ordered) * 0.95)]
    return (
        f"| {name} | {statistics.median(ordered) * 1e6:.0f} | {p95 * 1e6:.0f} | "
        f"{statistics.fmean(ordered) * 1e6:.0f} | {len(ordered) / sum(ordered):.0f} |"
    )


def main() -> int:
    from bench.config import load

    broker = os.environ.get("SENT_EVENTS_BROKER") or load().redis_url
    tasks = int(os.environ.get("SENT_EVENTS_TASKS", 6000))
    apps = {True: _app(broker, True), False: _app(broker, False)}
    timings: dict[bool, list[float]] = {True: [], False: []}
    with open("/proc/loadavg") as f:
        load_at_start = " ".join(f.read().split()[:3])
    for sent in (True, False):  # connections opened, nothing timed
        _round(apps[sent], [], 0)
    for n in range(0, tasks, ROUND):
        for sent in (True, False) if n // ROUND % 2 == 0 else (False, True):
            _round(apps[sent], timings[sent], n)
    with apps[False].connection_for_write() as conn:
        conn.default_channel.queue_delete(QUEUE)
    for app in apps.values():
        app.close()
    with open("/proc/loadavg") as f:
        load_at_end = " ".join(f.read().split()[:3])
    where = broker.split("@")[-1]
    print(f"{tasks:,} publishes per side, alternating rounds of {ROUND}; broker {where}")
    print(f"load average {load_at_start} at start, {load_at_end} at end")
    print("| task_send_sent_event | median µs | p95 µs | mean µs | publishes/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(_row("on", timings[True]))
    print(_row("off", timings[False]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
