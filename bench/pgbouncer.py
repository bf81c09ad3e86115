"""Per-transaction cost through PgBouncer vs direct: `python -m bench.pgbouncer` (README, "Behind
PgBouncer"). One client, sequential select + update + commit on one article row of the database
TEST_DATABASE_NAME (default articles_test; run the tests once to create it), through a private
PgBouncer in transaction mode with the README's settings. Needs `pgbouncer` installed."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from sqlalchemy import text

from db.engine import EngineOptions, make_engine, make_sessionmaker
from tests.support.pgbouncer import private_pgbouncer

DB = os.environ.get("TEST_DATABASE_NAME", "articles_test")
DIRECT = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB}"
# The settings' defaults (60 s, 10 s, 60 s).
LIMITS = {
    "statement_timeout_ms": 60_000,
    "lock_timeout_ms": 10_000,
    "idle_in_transaction_timeout_ms": 60_000,
}


async def per_transaction_ms(url: str, pool_size: int | None, options: EngineOptions) -> float:
    engine = make_engine(url, pool_size=pool_size, options=options)
    maker = make_sessionmaker(engine)

    async def one() -> None:
        async with maker() as session:
            await session.execute(text("SELECT id, body FROM articles ORDER BY id LIMIT 1"))
            await session.execute(
                text(
                    "UPDATE articles SET summary = summary "
                    "WHERE id = (SELECT min(id) FROM articles)"
                )
            )
            await session.commit()

    for _ in range(20):
        await one()
    started, count = time.perf_counter(), 400
    for _ in range(count):
        await one()
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return elapsed / count * 1000


def report(label: str, url: str, pool_size: int | None, options: EngineOptions) -> None:
    values = [asyncio.run(per_transaction_ms(url, pool_size, options)) for _ in range(3)]
    print(f"{label:42s} {statistics.median(values):6.2f} ms ({min(values):.2f}-{max(values):.2f})")


def main() -> None:
    with private_pgbouncer(pool_size=2) as bouncer:
        via = bouncer.url(DB)
        report("direct, nullpool", DIRECT, None, EngineOptions(**LIMITS))
        report("pgbouncer, nullpool", via, None, EngineOptions(pgbouncer=True, **LIMITS))
        report("direct, loop (pooled)", DIRECT, 1, EngineOptions(**LIMITS))
        report("pgbouncer, loop (pooled)", via, 1, EngineOptions(pgbouncer=True, **LIMITS))
        report("pgbouncer, loop (pooled), no limits", via, 1, EngineOptions(pgbouncer=True))


if __name__ == "__main__":
    main()
