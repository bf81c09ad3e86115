"""The one table (stdout and results.md) and the chart (results.png)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.config import BenchConfig

SETTINGS_NOTE = (
    "Every worker row uses the same settings: the project's celeryconfig unchanged (acks_late, "
    "prefetch multiplier 1, Redis result backend (results only, no extended results), task "
    "events off until asked for, track_started), `-P prefork -c {concurrency}`, log level "
    "`warning` (one INFO line per task is not what is measured), one queue per worker. The bare"
    " Celery row runs a Celery app with only the broker and result backend set, on the same "
    "flags. The sync reference runs on the `loop` row's worker (same settings). The peers run "
    "`{concurrency}` worker processes, one job at a time each, on the same Redis and database, "
    "timed by the articles' `processed_at` (middle 80%); no result backend for taskiq, ARQ's "
    "default stored results. The scram rows use a private PostgreSQL (fsync off) and a login "
    "role with a SCRAM verifier. Task rates are steady-state: the batch is queued while the "
    "worker is paused, and the rate is taken over the middle 80% of results by their "
    "`date_done`. Pipeline rates use the run's own `started_at`/`finished_at` (database clock),"
    " batch size {batch_size}, for the task and the direct loop alike."
)


@dataclass(frozen=True)
class Row:
    label: str
    value: str
    target: str
    verdict: str


def _m(samples: dict[str, list[float]], key: str) -> float:
    return statistics.median(samples[key])


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}" if len(values) > 1 else ""


def _ok(passed: bool) -> str:
    return "met" if passed else "MISSED"


def rows(samples: dict[str, list[float]]) -> list[Row]:
    return [*_ceiling_rows(samples), *_article_rows(samples), *_pipeline_rows(samples),
            *_bridge_rows(samples), *_memory_rows(samples)]  # fmt: skip


def _ceiling_rows(samples: dict[str, list[float]]) -> list[Row]:
    noop, bare = _m(samples, "noop"), _m(samples, "noop_bare")
    return [
        Row(
            "1. empty task `tests.noop`, the project's settings (the ceiling)",
            _rate(samples, "noop", "tasks/s"),
            f"≥ 0.9x bare Celery: {noop / bare:.2f}x",
            _ok(noop >= 0.9 * bare),
        ),
        Row(
            "1. empty task, bare Celery app (same broker and backend, default settings)",
            _rate(samples, "noop_bare", "tasks/s"),
            "",
            "",
        ),
    ]


def _article_rows(samples: dict[str, list[float]]) -> list[Row]:
    noop, nullpool, loop = (_m(samples, k) for k in ("noop", "article_nullpool", "article_loop"))
    sync = _m(samples, "article_sync")
    s_null, s_loop = _m(samples, "scram_nullpool"), _m(samples, "scram_loop")
    return [
        Row("2. `process_article`, nullpool bridge", _rate(samples, "article_nullpool", "tasks/s"),
            "", ""),
        Row(
            "2. `process_article`, loop bridge",
            _rate(samples, "article_loop", "tasks/s"),
            f"≥ 3x nullpool: {loop / nullpool:.2f}x; ≥ 0.6x ceiling: {loop / noop:.2f}x; "
            f"≥ 0.9x sync reference: {loop / sync:.2f}x",
            f"{_ok(loop >= 3 * nullpool)}; {_ok(loop >= 0.6 * noop)}; {_ok(loop >= 0.9 * sync)}",
        ),
        Row(
            "2. reference: the same work as a plain sync task, SQLAlchemy sync engine on "
            "psycopg 3, `QueuePool`",
            _rate(samples, "article_sync", "tasks/s"),
            f"loop / reference: {loop / sync:.2f}x (the bridge tax)",
            "",
        ),
        Row("2. scram-sha-256 login (private PostgreSQL), nullpool bridge",
            _rate(samples, "scram_nullpool", "tasks/s"), "", ""),
        Row(
            "2. scram-sha-256 login (private PostgreSQL), loop bridge",
            _rate(samples, "scram_loop", "tasks/s"),
            f"≥ 3x nullpool, more than with trust: {s_loop / s_null:.2f}x "
            f"(trust: {loop / nullpool:.2f}x)",
            f"{_ok(s_loop >= 3 * s_null)}; {_ok(s_loop / s_null > loop / nullpool)}",
        ),
    ]  # fmt: skip


def _pipeline_rows(samples: dict[str, list[float]]) -> list[Row]:
    direct = _m(samples, "pipeline_direct")
    pipe_loop, pipe_null = _m(samples, "pipeline_loop"), _m(samples, "pipeline_nullpool")
    best_peer = max(_m(samples, "peer_taskiq"), _m(samples, "peer_arq"))
    return [
        Row("3. peer: taskiq + taskiq-redis, same work, async SQLAlchemy on asyncpg",
            _rate(samples, "peer_taskiq", "tasks/s"), "", ""),
        Row("3. peer: ARQ, same work, async SQLAlchemy on asyncpg",
            _rate(samples, "peer_arq", "tasks/s"), "", ""),
        Row("3. `run_pipeline`, nullpool bridge", _rate(samples, "pipeline_nullpool", "articles/s"),
            f"{pipe_null / direct:.0%} of direct", ""),
        Row(
            "3. `run_pipeline`, loop bridge",
            _rate(samples, "pipeline_loop", "articles/s"),
            f"≥ 50% of direct: {pipe_loop / direct:.0%}; "
            f"≥ 4x the faster peer: {pipe_loop / best_peer:.1f}x",
            f"{_ok(pipe_loop >= 0.5 * direct)}; {_ok(pipe_loop >= 4 * best_peer)}",
        ),
        Row("3. same batches direct, one connection, no Celery",
            _rate(samples, "pipeline_direct", "articles/s"), "", ""),
    ]  # fmt: skip


def _bridge_rows(samples: dict[str, list[float]]) -> list[Row]:
    loop_us = _m(samples, "bridge_loop")
    return [
        Row("4. bridge call, no DB: `async_to_sync` alone", _us(samples, "bridge_async_to_sync"),
            "", ""),
        Row("4. bridge call, no DB: nullpool bridge (`async_to_sync`)",
            _us(samples, "bridge_nullpool"), "", ""),
        Row("4. bridge call, no DB: loop bridge, its own thread (threads pool)",
            _us(samples, "bridge_loop"), "≤ 100 µs", _ok(loop_us <= 100)),
        Row("4. bridge call, no DB: loop bridge, inline (prefork, solo)",
            _us(samples, "bridge_loop_inline"), "≤ 100 µs",
            _ok(_m(samples, "bridge_loop_inline") <= 100)),
        Row("4. reference: bare thread handoff (call_soon_threadsafe + lock)",
            _us(samples, "bridge_floor"), "", ""),
    ]  # fmt: skip


def _memory_rows(samples: dict[str, list[float]]) -> list[Row]:
    out = []
    for bridge in ("nullpool", "loop"):
        before, after = _m(samples, f"rss_{bridge}_before"), _m(samples, f"rss_{bridge}_after")
        growth = (after - before) / before
        out.append(
            Row(
                f"5. worker RSS (main + children), {bridge}",
                f"{before:.1f} → {after:.1f} MB",
                f"flat (≤ 5%): {growth:+.1%}",
                _ok(growth <= 0.05),
            )
        )
    return out


def _rate(samples: dict[str, list[float]], key: str, unit: str) -> str:
    spread = _spread(samples[key])
    return f"{_m(samples, key):,.0f} {unit}" + (f" ({spread})" if spread else "")


def _us(samples: dict[str, list[float]], key: str) -> str:
    values = samples[key]
    spread = f" ({min(values):.0f}-{max(values):.0f})" if len(values) > 1 else ""
    return f"{_m(samples, key):.0f} µs{spread}"


def table(table_rows: list[Row]) -> str:
    lines = [
        "| Measurement | Median (min-max) | Target / ratio | Result |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.label} | {r.value} | {r.target} | {r.verdict} |" for r in table_rows]
    return "\n".join(lines)


def write(cfg: BenchConfig, samples: dict[str, list[float]], conditions: dict[str, str]) -> None:
    text = table(rows(samples))
    print(text, flush=True)
    lines = [
        "# Benchmark results",
        "",
        "Produced by `make bench` (`python -m bench`); medians over repeated runs, all rows from "
        "the same run.",
        "",
        text,
        "",
        "## Conditions",
        "",
        *[f"- {key}: {value}" for key, value in conditions.items()],
        "",
        "## Settings",
        "",
        SETTINGS_NOTE.format(concurrency=cfg.concurrency, batch_size=cfg.batch_size),
        "",
    ]
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / "results.md").write_text("\n".join(lines))
    chart(cfg, samples)
    print(f"bench: wrote {cfg.out_dir / 'results.md'} and {cfg.out_dir / 'results.png'}")


def chart(cfg: BenchConfig, samples: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = [
        (axes[0][0], f"Tasks/s (concurrency {cfg.concurrency})",
         [("empty", "noop"), ("bare empty", "noop_bare"), ("nullpool", "article_nullpool"),
          ("loop", "article_loop"), ("sync ref", "article_sync"), ("taskiq", "peer_taskiq"),
          ("arq", "peer_arq"), ("scram null", "scram_nullpool"), ("scram loop", "scram_loop")]),
        (axes[0][1], "run_pipeline articles/s",
         [("nullpool", "pipeline_nullpool"), ("loop", "pipeline_loop"),
          ("direct", "pipeline_direct")]),
        (axes[1][0], "Bridge overhead per call, µs (no DB)",
         [("async_to_sync", "bridge_async_to_sync"), ("nullpool", "bridge_nullpool"),
          ("loop", "bridge_loop"), ("loop inline", "bridge_loop_inline"),
          ("handoff floor", "bridge_floor")]),
        (axes[1][1], "Worker RSS, MB (before / after tasks)",
         [("nullpool before", "rss_nullpool_before"), ("nullpool after", "rss_nullpool_after"),
          ("loop before", "rss_loop_before"), ("loop after", "rss_loop_after")]),
    ]  # fmt: skip
    colours = ["#8c8c8c", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
               "#a6761d", "#666666"]  # fmt: skip
    for ax, title, bars in panels:
        values = [_m(samples, key) for _, key in bars]
        drawn = ax.bar([label for label, _ in bars], values, color=colours[: len(bars)])
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.bar_label(drawn, fmt="%.0f")
        ax.set_title(title)
        ax.margins(y=0.15)
    fig.suptitle("articles worker: nullpool vs loop bridge (medians, one run)")
    fig.tight_layout()
    fig.savefig(cfg.out_dir / "results.png", dpi=110)
    plt.close(fig)
