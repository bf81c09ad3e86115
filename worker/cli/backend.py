"""Which backend the settings select (embedded files or servers), described with masked URLs."""

from __future__ import annotations

from worker.runtime.embedded import fallback_notice, sqlite_path, urls
from worker.runtime.settings import Settings, mask_url


def kind(settings: Settings) -> str:
    """`embedded` (all three on SQLite files), `servers` (none), or `mixed`."""
    files = sum(sqlite_path(url) is not None for url in urls(settings))
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
    line = (
        f"backend: {where} | database {info['database']} | broker {info['broker']} "
        f"| results {info['result_backend']}"
    )
    notice = fallback_notice(settings)
    return f"{line}\nnote: {notice}" if notice else line


def configure_client(settings: Settings) -> None:
    """Point the client's producer at the project's own broker and result backend.

    The client never chooses the embedded default by itself; the `articles` command, which may,
    hands it the URLs its settings chose.
    """
    from articles_client import configure

    configure(broker_url=settings.celery_broker_url, result_backend=settings.celery_result_backend)
