"""The `articles` command: migrate, load articles, run the pipeline, watch it, and the demo.

Every command first says which backend it uses (on stderr, URLs masked). Errors a user can cause
(a server down, a bad URL, an unknown run id) end the command with one `error:` line on stderr and
exit status 1 (2 for bad usage or configuration); they never print a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from articles_client.contract import IngestPayload
from articles_client.errors import ArticlesError, ConfigurationError, TransientError
from worker.cli import admin, backend, deadletters, jsonl, seed
from worker.cli.failures import describe_failure, root_cause, user_errors
from worker.runtime import bridge, embedded, logformat
from worker.runtime.settings import Settings, get_settings, mask_url

Handler = Callable[[argparse.Namespace, Settings], int]


class DatabaseUnavailable(ArticlesError):
    """The database could not be reached (or kept failing) while the command ran."""


INGEST_HELP = """\
Load articles from a JSON Lines file (one object per line with title, body and optionally
source_url and external_id). Lines are validated exactly like the articles.ingest task and
inserted straight into the database, not sent through the broker: a file load is an operator's
bulk job, so it runs as one transaction instead of one task per line, needs no running
worker, and reports each bad line with its number right away (a task would fail later, in a
worker's log). The insert is the same idempotent query the task uses: a known external_id is
not inserted twice. Bad lines are reported on stderr and the good ones are still ingested; the
exit status is 1 if any line was bad.
"""

cli_log = logging.getLogger("articles.cli")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `articles` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
        if settings.log_format == "json":
            _log_json()
        embedded.prepare_dirs(settings)
        _say(logging.INFO, backend.banner(settings))
        handler: Handler = args.handler
        return handler(args, settings)
    except ConfigurationError as exc:
        _say(logging.ERROR, f"error: {exc}")
        return 2
    except user_errors() as exc:
        _say(logging.ERROR, f"error: {describe_failure(exc)}")
        return 1
    except KeyboardInterrupt:
        _say(logging.WARNING, "interrupted")
        return 130
    finally:
        bridge.shutdown()


def _log_json() -> None:
    """LOG_FORMAT=json: stderr carries JSON log lines; stdout keeps the command's output."""
    handler = logging.StreamHandler(sys.stderr)
    logformat.use_json([handler])
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries' chatter (alembic's plugins) stays out
    cli_log.setLevel(logging.INFO)
    logging.captureWarnings(True)


def _say(level: int, text: str) -> None:
    """A line for the operator on stderr: a log record in JSON mode, plain text otherwise."""
    if logging.getLogger().handlers:
        cli_log.log(level, text)
    else:
        err.print(text, soft_wrap=True, markup=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="articles",
        description="Run and watch the article pipeline. With no DATABASE_URL, "
        "CELERY_BROKER_URL or CELERY_RESULT_BACKEND set, everything uses files under ./var/.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply migrations up to head").set_defaults(
        handler=cmd_db_upgrade
    )

    seeding = commands.add_parser("seed", help="insert N generated sample articles")
    seeding.add_argument("count", type=_positive, metavar="N")
    seeding.add_argument("--seed", type=int, default=None, help="random seed for the texts")
    seeding.set_defaults(handler=cmd_seed)

    ingest = commands.add_parser(
        "ingest", help="load articles from a JSON Lines file", description=INGEST_HELP
    )
    ingest.add_argument("--file", required=True, type=Path, metavar="F.jsonl")
    ingest.set_defaults(handler=cmd_ingest)

    enqueue = commands.add_parser("enqueue", help="send a job to the workers")
    jobs = enqueue.add_subparsers(dest="job", required=True, metavar="JOB")
    pipeline = jobs.add_parser("pipeline", help="enqueue articles.run_pipeline")
    pipeline.add_argument("--batch-size", type=_positive, default=100)
    pipeline.add_argument("--limit", type=_positive, default=None)
    pipeline.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    pipeline.add_argument("--timeout", type=float, default=600, help="seconds to --wait")
    pipeline.add_argument("--json", action="store_true", help="print the outcome as JSON")
    pipeline.set_defaults(handler=cmd_enqueue_pipeline)

    status = commands.add_parser("status", help="counts by status, recent runs, failures")
    status.add_argument("--run", type=int, default=None, metavar="RUN_ID")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--runs", type=_positive, default=10, help="how many recent runs")
    status.add_argument("--failures", type=_positive, default=20, help="how many failed")
    status.set_defaults(handler=cmd_status)

    deadletters.register(commands)

    commands.add_parser("retry-failed", help="put failed articles back to pending").set_defaults(
        handler=cmd_retry_failed
    )

    outbox = commands.add_parser("outbox", help="the transactional outbox")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    relay = outbox_commands.add_parser(
        "relay", help="publish committed outbox rows to the broker (long-running)"
    )
    relay.add_argument("--batch-size", type=_positive, default=None, help="rows per batch")
    relay.add_argument(
        "--sweep", type=float, default=None, help="seconds between sweeps for missed rows"
    )
    relay.set_defaults(handler=cmd_outbox_relay)

    demo = commands.add_parser("demo", help="worker + beat + seed + pipeline run, end to end")
    demo.add_argument("--articles", type=_positive, default=300)
    demo.add_argument("--batch-size", type=_positive, default=50)
    demo.add_argument("--concurrency", type=_positive, default=2)
    demo.add_argument("--timeout", type=float, default=300, help="seconds for the run")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def in_db(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Run one `worker.admin` transaction through the bridge, naming the database on failure."""
    try:
        return bridge.run_in_session(functools.partial(fn, **kwargs))
    except TransientError as exc:
        url = mask_url(get_settings().database_url)
        root = root_cause(exc)
        raise DatabaseUnavailable(
            f"cannot use the database {url}: {type(root).__name__}: {root}"
        ) from exc


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from db.migrate import upgrade

    upgrade(settings.database_url, pgbouncer=settings.database_pgbouncer)
    out.print(f"database {mask_url(settings.database_url)} is at the latest migration")
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    articles = [
        IngestPayload(
            title=a.title, body=a.body, source_url=a.source_url, external_id=a.external_id
        )
        for a in seed.generate(args.count, seed=args.seed)
    ]
    inserted: admin.Inserted = in_db(admin.insert_articles, articles=articles)
    out.print(f"seeded {len(inserted.created)} articles (pending)")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.file
    try:
        with path.open(encoding="utf-8", errors="strict") as handle:
            parsed = jsonl.parse_lines(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise ArticlesError(f"cannot read {path}: {describe_failure(exc)}") from None
    for number, problem in parsed.errors:
        _say(logging.ERROR, f"{path}:{number}: {problem}")
    inserted: admin.Inserted = in_db(admin.insert_articles, articles=parsed.articles)
    out.print(
        f"ingested {len(inserted.created)} new, {inserted.existing} already present, "
        f"{len(parsed.errors)} bad line(s)"
    )
    return 1 if parsed.errors else 0


def cmd_enqueue_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    from worker.cli.progress import wait_for_run
    from worker.producer import enqueue_pipeline_run

    backend.configure_client(settings)
    result = enqueue_pipeline_run(batch_size=args.batch_size, limit=args.limit)
    if not args.wait:
        _emit(args.json, {"task_id": result.id}, f"enqueued articles.run_pipeline {result.id}")
        return 0
    _say(logging.INFO, f"enqueued articles.run_pipeline {result.id}")
    outcome = wait_for_run(result, timeout=args.timeout, console=err)
    outcome = {"task_id": result.id, **outcome}
    _emit(
        args.json,
        outcome,
        f"run {outcome.get('run_id')}: {outcome.get('claimed')} claimed, "
        f"{outcome.get('succeeded')} done, {outcome.get('failed')} failed"
        + ("" if outcome.get("complete", True) else " (time budget spent: the next run goes on)"),
    )
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    if args.run is not None:
        run: dict[str, Any] = in_db(admin.run_status, run_id=args.run)
        if args.json:
            _print_json({"backend": backend.describe(settings), "run": run})
        else:
            out.print(_runs_table([run], title=f"Run {args.run}"))
        return 0
    snapshot: dict[str, Any] = in_db(admin.status, runs=args.runs, failures=args.failures)
    dead = deadletters.count(settings)
    if args.json:
        _print_json({"backend": backend.describe(settings), **snapshot, "dead_letters": dead})
        return 0
    counts = Table(title="Articles by status")
    for name in snapshot["counts"]:
        counts.add_column(name, justify="right")
    counts.add_row(*(str(n) for n in snapshot["counts"].values()))
    out.print(counts)
    out.print(_runs_table(snapshot["recent_runs"], title="Recent pipeline runs"))
    failed = Table("id", "title", "attempts", "error", title="Failed articles")
    for article in snapshot["failed_articles"]:
        failed.add_row(
            str(article["id"]), article["title"], str(article["attempts"]), article["error"] or ""
        )
    out.print(failed)
    box = snapshot["outbox"]
    age = box["oldest_age_seconds"]
    out.print(
        f"outbox: {box['backlog']} row(s) waiting"
        + (f", oldest {age:.1f}s old" if age is not None else "")
        + (f", {box['failing']} failing to publish" if box["failing"] else ""),
        markup=False,
    )
    out.print(f"Dead letters: {dead}" + (" (see `articles dead-letters list`)" if dead else ""))
    return 0


def cmd_retry_failed(args: argparse.Namespace, settings: Settings) -> int:
    count: int = in_db(admin.retry_failed)
    out.print(f"{count} failed article(s) put back to pending")
    return 0


def cmd_outbox_relay(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from worker.runtime.outbox_relay import serve

    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s"
    )
    serve(
        database_url=settings.outbox_database_url,
        broker_url=settings.celery_broker_url,
        batch_size=args.batch_size or settings.outbox_batch_size,
        sweep_seconds=args.sweep or settings.outbox_sweep_seconds,
    )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from worker.cli.demo import Demo

    return Demo(
        settings,
        articles=args.articles,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        timeout=args.timeout,
        console=out,
    ).run()


def _runs_table(runs: list[dict[str, Any]], *, title: str) -> Table:
    table = Table("run", "status", "claimed", "done", "failed", "started", "finished", "error")
    table.title = title
    for run in runs:
        table.add_row(
            str(run["run_id"]),
            run["status"],
            str(run["claimed"]),
            str(run["succeeded"]),
            str(run["failed"]),
            (run["started_at"] or "")[:19],
            (run["finished_at"] or "")[:19],
            run["error"] or "",
        )
    return table


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        _print_json(data)
    else:
        out.print(text, markup=False)


def _print_json(data: dict[str, Any]) -> None:
    # Plain print, not rich: the output must be exactly the JSON document.
    print(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
