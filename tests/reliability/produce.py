"""Enqueue one job with the real producer and report how it went, as one JSON line.

Run as `python -m tests.reliability.produce ARTICLE_ID` with the environment of the servers to
use; the reliability tests time it against a broker that is down or restarting.
"""

from __future__ import annotations

import json
import sys
import time

from articles_client.errors import BrokerUnavailable
from worker.producer import enqueue_process_article


def main(article_id: int) -> None:
    start = time.monotonic()
    try:
        result = enqueue_process_article(article_id=article_id)
    except BrokerUnavailable as exc:
        outcome = {"ok": False, "error": str(exc)}
    else:
        outcome = {"ok": True, "task_id": result.id}
    outcome["seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(outcome))


if __name__ == "__main__":
    main(int(sys.argv[1]))
