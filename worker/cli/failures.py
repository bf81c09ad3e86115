"""Failures a user can cause, and how to say them in one line (no traceback, no password)."""

from __future__ import annotations

import re

from kombu.exceptions import KombuError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from articles_client.errors import ArticlesError

_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^:/@\s]*:)[^@\s]+@")
_MISSING_TABLE = ("no such table", "UndefinedTable")


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions the CLI reports as one line: servers down, bad URLs, bad input."""
    from alembic.util import CommandError

    return (ArticlesError, SQLAlchemyError, OSError, KombuError, RedisError, CommandError)


def describe_failure(exc: BaseException) -> str:
    """One line: the error, its root cause, and a hint when there is an obvious fix."""
    root = root_cause(exc)
    if isinstance(exc, DBAPIError):
        text = f"database error: {_name(root)}: {_one_line(str(root))}"
    else:
        text = _one_line(str(exc)) or _name(exc)
        cause = _one_line(str(root))
        if root is not exc and cause not in text:
            text = f"{text} ({_name(root)}: {cause})"
    if any(marker in text for marker in _MISSING_TABLE) or (
        "relation" in text and "does not exist" in text
    ):
        text += " (run `articles db upgrade` first)"
    return _URL_PASSWORD.sub(r"\1***@", text)


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception: follows `raise ... from` and SQLAlchemy's wrapped driver error."""
    seen = {id(exc)}
    while True:
        inner = exc.orig if isinstance(exc, DBAPIError) else exc.__cause__
        if not isinstance(inner, BaseException) or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def _one_line(text: str) -> str:
    # Driver messages can span lines and carry the statement; the first line says what matters.
    stripped = text.strip()
    first = stripped.splitlines()[0] if stripped else ""
    return " ".join(first.split())[:400]
