"""Counting round trips to PostgreSQL as asyncpg makes them: every protocol call that sends a
request and waits for the server's answer (a prepare, a bind-and-execute, a simple query such
as BEGIN or COMMIT), on every connection an engine opens from then on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

# asyncpg's Protocol coroutines, each one request and its answer (asyncpg/protocol/protocol.pyx).
ROUND_TRIPS = frozenset(
    {
        "prepare",
        "bind_execute",
        "bind_execute_many",
        "bind",
        "execute",
        "close_portal",
        "query",
        "copy_out",
        "copy_in",
        "close_statement",
    }
)


class _CountingProtocol:
    """Stands in for an asyncpg connection's protocol object and records its round trips."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in ROUND_TRIPS:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(_label(name, args or tuple(kwargs.values())))
            return attr(*args, **kwargs)

        return counted


def _label(name: str, args: tuple[Any, ...]) -> str:
    if name == "query":  # simple protocol: BEGIN, COMMIT, ROLLBACK
        return f"query {str(args[0]).split()[0].upper()}"
    if name == "prepare":  # (statement name, query, ...)
        query = str(args[1]) if len(args) > 1 else ""
    else:  # (prepared statement state, ...)
        query = str(getattr(args[0], "query", "")) if args else ""
    return f"{name} {' '.join(query.split()[:2]) or '(empty)'}"


class RoundTrips:
    """The round trips and logins of an engine's connections opened after this was made."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.calls: list[str] = []
        self.logins = 0
        # insert=True: before the dialect's own set-up on connect (its type codec queries are
        # round trips a new connection pays too).
        event.listen(engine.sync_engine, "connect", self._on_connect, insert=True)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        self.logins += 1
        raw = dbapi_connection._connection  # the asyncpg connection under SQLAlchemy's adapter
        raw._protocol = _CountingProtocol(raw._protocol, self.calls)

    def reset(self) -> None:
        self.calls.clear()
        self.logins = 0

    def summary(self) -> Counter[str]:
        return Counter(self.calls)
