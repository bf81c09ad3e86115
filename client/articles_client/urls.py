"""Broker and result-backend URLs: which schemes are accepted, and how they are printed."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

BROKER_SCHEMES: Final = ("redis", "rediss", "sqla+sqlite", "amqp", "amqps")
BACKEND_SCHEMES: Final = ("redis", "rediss", "db+sqlite")


def check_scheme(value: str, allowed: tuple[str, ...]) -> str:
    """Return `value` if its scheme is allowed and its port is a number; raise `ValueError`."""
    if not value:
        return value
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in allowed:
        raise ValueError(f"scheme {scheme or '(none)'!r} is not one of {', '.join(allowed)}")
    try:
        urlsplit(value).port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"bad URL: {exc}") from None
    return value


def mask_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, for logs and output."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
