"""Which backend the settings select (embedded files or servers), described with masked URLs.

The embedded default keeps SQLite files under ./var/. SQLite creates a missing file but not a
missing directory, so `prepare_dirs` makes the parent of every SQLite file before first use.
"""

from __future__ import annotations

from pathlib import Path

from worker.settings import Settings, mask_url

_SQLITE_PREFIXES = ("sqlite+aiosqlite:///", "sqla+sqlite:///", "db+sqlite:///")


def sqlite_path(url: str) -> Path | None:
    """The file an SQLite URL points at, or None for a server URL (or in-memory SQLite)."""
    for prefix in _SQLITE_PREFIXES:
        if url.startswith(prefix):
            path = url[len(prefix) :].split("?", 1)[0]
            return Path(path) if path and path != ":memory:" else None
    return None


def _urls(settings: Settings) -> tuple[str, str, str]:
    return settings.database_url, settings.celery_broker_url, settings.celery_result_backend


def prepare_dirs(settings: Settings) -> None:
    """Create the directories the SQLite files of the settings live in."""
    for url in _urls(settings):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


def kind(settings: Settings) -> str:
    """`embedded` (all three on SQLite files), `servers` (none), or `mixed`."""
    files = sum(sqlite_path(url) is not None for url in _urls(settings))
    return "embedded" if files == 3 else "servers" if files == 0 else "mixed"


def describe(settings: Settings) -> dict[str, str]:
    """The backend as stable, password-free fields (used by `status --json` and the banner)."""
    return {
        "kind": kind(settings),
        "database": mask_url(settings.database_url),
        "broker": mask_url(settings.celery_broker_url),
        "result_backend": mask_url(settings.celery_result_backend),
    }


def banner(settings: Settings) -> str:
    """One line saying which backend is in use, for the start of every command."""
    info = describe(settings)
    where = {
        "embedded": "embedded files (single host; no broadcast: no `celery inspect`, no Flower)",
        "servers": "servers",
        "mixed": "mixed files and servers",
    }[info["kind"]]
    return (
        f"backend: {where} | database {info['database']} | broker {info['broker']} "
        f"| results {info['result_backend']}"
    )
