"""How many round trips to PostgreSQL one `process_article` costs on each bridge, counted at
asyncpg's protocol (a count, not a timing).

On a warm `loop` connection: BEGIN, the statement that counts the attempt and reads the article,
COMMIT, and the one-statement write. `nullpool` pays one login per task and a prepare per
statement (a new connection has no statement cache). Before this count was kept down, `loop`
paid 13 (a pre-ping at each of two checkouts, itself BEGIN, `;` and ROLLBACK) and `nullpool`
10 with two logins.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator

import pytest

from tasks import jobs
from tests.integration.helpers import add_articles, sql
from tests.support.env import DATABASE_URL
from tests.support.roundtrips import RoundTrips
from worker.runtime import bridge

pytestmark = pytest.mark.integration

WARM_UP = 2
COUNTED = 3


@pytest.fixture(params=["loop", "nullpool"])
def a_bridge(request: pytest.FixtureRequest, clean_db: str) -> Iterator[bridge.Bridge]:
    made: bridge.LoopBridge | bridge.NullPoolBridge = (
        bridge.LoopBridge(DATABASE_URL, cancel_timeout=10, pool_size=2)
        if request.param == "loop"
        else bridge.NullPoolBridge(DATABASE_URL, cancel_timeout=10)
    )
    yield made
    made.close()


def _process(on: bridge.Bridge, article_id: int) -> None:
    result = on.run_in_session(functools.partial(jobs.process_article, article_id=article_id))
    assert result["status"] == "done"


def test_process_article_round_trips(a_bridge: bridge.Bridge) -> None:
    engine = a_bridge.engine  # type: ignore[attr-defined]
    counter = RoundTrips(engine)
    ids = add_articles(WARM_UP + COUNTED)
    for article_id in ids[:WARM_UP]:
        _process(a_bridge, article_id)
    counter.reset()
    for article_id in ids[WARM_UP:]:
        _process(a_bridge, article_id)
    per_task = Counter({call: n // COUNTED for call, n in counter.summary().items()})
    assert sum(counter.summary().values()) % COUNTED == 0, counter.calls
    print(f"\n[{a_bridge.name}] per process_article: {dict(per_task)}, logins {counter.logins}")
    statements = {"bind_execute UPDATE articles": 2}
    if a_bridge.name == "loop":
        assert per_task == Counter({"query BEGIN": 1, "query COMMIT;": 1, **statements})
        assert counter.logins == 0
    else:
        prepares = {"prepare UPDATE articles": 2}
        assert per_task == Counter(
            {"query BEGIN;": 1, "query COMMIT;": 1, **statements, **prepares}
        )
        assert counter.logins == COUNTED  # one login per task, not one per transaction
    assert sql("SELECT DISTINCT times_processed, attempts FROM articles") == [
        {"times_processed": 1, "attempts": 1}
    ]
