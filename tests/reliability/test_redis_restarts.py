"""Soak: Redis (AOF on) restarted ten times in a row while a worker runs 1,500 article jobs.

The worker runs as a user's would (heartbeat, mingle and gossip on) with the production
visibility timeout (900 s), so nothing may wait for it: every message the worker held when a
connection died has to come back when it reconnects, within the test's few minutes.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.conftest import Stack, redis_only
from tests.reliability.test_outages import PRODUCTION_TIMINGS
from worker import contract

pytestmark = [
    pytest.mark.reliability,
    # The broker restart mid-run, on either broker, is in test_outages.
    redis_only("AOF restarts and kombu's Redis reconnect race"),
]

RESTARTS = 10
EVERY = 3.0  # seconds from one restart to the next
DOWN = 0.5  # seconds Redis stays stopped each time


@pytest.mark.timeout(600)
def test_ten_redis_restarts_worker_keeps_consuming_and_every_article_is_done_once(
    stack: Stack,
) -> None:
    total, late = 1500, 20
    stack.add_articles(total + late)
    env = stack.env(**PRODUCTION_TIMINGS)
    with stack.client() as app, stack.worker(env, cluster_steps=True) as worker:
        for article_id in range(1, total + 1):
            app.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": article_id})
        stack.wait_for(lambda: stack.counts().get("done", 0) >= 50, 60, "work under way", 0.02)
        done_at_restart = []
        for _ in range(RESTARTS):
            time.sleep(EVERY - DOWN)
            stack.redis.stop()
            time.sleep(DOWN)
            stack.redis.start()
            done_at_restart.append(stack.counts().get("done", 0))
            assert worker.popen.poll() is None, worker.log()[-6000:]
        last_restart = time.monotonic()
        # Published after the last restart: the worker is consuming, not only alive.
        with stack.client() as fresh:
            for article_id in range(total + 1, total + late + 1):
                fresh.send_task(contract.PROCESS_ARTICLE, kwargs={"article_id": article_id})
        # Every message consumed and acknowledged: nothing waits for the 900 s visibility timeout.
        redis = stack.redis.client()

        def queued() -> int:
            return sum(int(redis.llen(queue)) for queue in contract.WORK_QUEUES)

        stack.wait_for(
            lambda: (queued(), redis.hlen("unacked")) == (0, 0),
            420,
            "every message consumed and acknowledged",
            1,
            lambda: f"queued {queued()}, unacked {redis.hgetall('unacked')}",
        )
        stack.wait_for(lambda: "processing" not in stack.counts(), 60, "the last tasks to end")
        recovered = time.monotonic() - last_restart
        # kombu's Redis transport pops a message (BRPOP), then records it as unacknowledged: a
        # reply lost as Redis shuts down loses that message (README, Known limits). Its article
        # is still pending, and the pipeline that beat runs every minute does it.
        lost = [r["id"] for r in stack.sql("SELECT id FROM articles WHERE status = 'pending'")]
        if lost:
            app.send_task(contract.RUN_PIPELINE, kwargs={"batch_size": 100})
            stack.wait_for(stack.all_done(total + late), 120, "the pipeline doing the rest")
        assert worker.popen.poll() is None, worker.log()[-6000:]
        log = worker.log()
    failed_acks = log.count("Couldn't ack")
    returned = log.count("returned to their queue")
    print(
        f"\n{RESTARTS} Redis restarts every {EVERY:.0f} s; done at each restart {done_at_restart}; "
        f"every message consumed and acknowledged {recovered:.1f}s after the last restart; "
        f"reconnects that returned held messages: {returned}; acks that failed: {failed_acks}; "
        f"messages lost between pop and delivery (done by the pipeline): {lost}"
    )
    assert done_at_restart[-1] < total, "the work ended before the restarts did"
    # The window loses at most the one pop in flight on the consuming connection per shutdown.
    # Seen in nine runs on 2026-11-26: none in six, 1 in two, 4 in one. More than one per
    # restart would be another bug.
    assert len(lost) <= RESTARTS, "more messages lost than kombu's pop-then-record window explains"
    assert log.count("Connected to redis") >= RESTARTS + 1
    assert "Unrecoverable error" not in log
    assert "AttributeError" not in log
    assert stack.counts() == {"done": total + late}
    assert stack.times_processed() == {1: total + late}
