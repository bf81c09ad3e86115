"""Driver errors translated at the boundary into the project's retry / no-retry hierarchy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

from articles_client.errors import TransientError

# SQLSTATEs worth retrying: serialization failure, deadlock, the connection / shutdown classes,
# and the session limits firing (DATABASE_LOCK_TIMEOUT: lock_not_available; DATABASE_STATEMENT_
# TIMEOUT: query_canceled), so a row held by someone else ends as a retry, not a task stuck until
# its hard time limit.
_TRANSIENT_SQLSTATES = ("40001", "40P01", "57P01", "57P02", "57P03", "53300", "55P03", "57014")
_TRANSIENT_PREFIXES = ("08",)


def is_transient(exc: BaseException) -> bool:
    """True for failures that may pass if the same work is tried again later."""
    if isinstance(exc, (ConnectionError, TimeoutError, sa_exc.TimeoutError)):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, (sa_exc.OperationalError, sa_exc.InterfaceError)
        ):
            return True
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(code, str):
            return code in _TRANSIENT_SQLSTATES or code.startswith(_TRANSIENT_PREFIXES)
    name = type(exc).__name__
    # asyncpg raises these outside SQLAlchemy's wrapping: while connecting, and
    # (InternalClientError, which SQLAlchemy does not translate) when its protocol loses track of
    # a connection PostgreSQL closed mid-reply. Another attempt on a new connection may pass.
    return name in {
        "InternalClientError",
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "TooManyConnectionsError",
        "InterfaceError",
    }


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise transient driver errors as `TransientError`, keeping the original as cause."""
    try:
        yield
    except TransientError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise TransientError(f"transient database error: {_short(exc)}") from exc
        raise


def _short(exc: BaseException) -> str:
    # The first line only: driver messages can carry the whole statement and its parameters.
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
