"""The embedded default's files: SQLite creates a missing file but not a missing directory, so
`prepare_dirs` makes the parent of every SQLite file the settings name before first use."""

from __future__ import annotations

from pathlib import Path

from worker.runtime.settings import Settings

_SQLITE_PREFIXES = ("sqlite+aiosqlite:///", "sqla+sqlite:///", "db+sqlite:///")


def sqlite_path(url: str) -> Path | None:
    """The file an SQLite URL points at, or None for a server URL (or in-memory SQLite)."""
    for prefix in _SQLITE_PREFIXES:
        if url.startswith(prefix):
            path = url[len(prefix) :].split("?", 1)[0]
            return Path(path) if path and path != ":memory:" else None
    return None


def urls(settings: Settings) -> tuple[str, str, str]:
    """The database, broker and result-backend URLs, in that order."""
    return settings.database_url, settings.celery_broker_url, settings.celery_result_backend


def fallback_notice(settings: Settings) -> str | None:
    """The line the worker, beat and the `articles` command print at start when some URL was not
    set and the embedded default was chosen for it; None when everything was configured.

    Only the project's own processes fall back; the client refuses to run without a broker URL.
    """
    if not settings.defaulted:
        return None
    return (
        f"{', '.join(settings.defaulted)} not set: using the embedded default "
        "(SQLite files under ./var/, single host; set the variables to use servers)"
    )


def prepare_dirs(settings: Settings) -> None:
    """Create the directories the SQLite files of the settings live in."""
    for url in urls(settings):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
