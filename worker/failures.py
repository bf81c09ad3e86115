"""Failures a user can cause, and how to say them in one line (no traceback, no password)."""

from __future__ import annotations

import re

from kombu.exceptions import KombuError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from worker.errors import ArticlesError

_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^:/@\s]*:)[^@\s]+@")
_MISSING_TABLE = ("no such table", "UndefinedTable")


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions the CLI reports as one line: servers down, bad URLs, bad input."""
    from alembic.util import CommandError

    return (ArticlesError, SQLAlchemyError, OSError, KombuError, RedisError, CommandError)


def describe_failure(exc: BaseException) -> str:
    """One line: the error, its underlying cause, and a hint when there is an obvious fix."""
    text = _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = f"database error: {_name(exc.orig)}: {_one_line(str(exc.orig))}"
    elif exc.__cause__ is not None and _one_line(str(exc.__cause__)) not in text:
        text = f"{text} ({_name(exc.__cause__)}: {_one_line(str(exc.__cause__))})"
    if any(marker in text for marker in _MISSING_TABLE):
        text += " (run `articles db upgrade` first)"
    return _URL_PASSWORD.sub(r"\1***@", text)


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def _one_line(text: str) -> str:
    # Driver messages can span lines and carry the statement; the first line says what matters.
    stripped = text.strip()
    first = stripped.splitlines()[0] if stripped else ""
    return " ".join(first.split())[:400]
