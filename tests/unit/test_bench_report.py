"""The benchmark's table: every ratio the issue's targets name, computed from the medians."""

from __future__ import annotations

import pytest

from bench.report import rows, table

pytestmark = pytest.mark.unit

SAMPLES: dict[str, list[float]] = {
    "noop": [400, 450, 500],
    "noop_bare": [500, 500, 500],
    "article_nullpool": [100],
    "article_loop": [300],
    "article_sync": [320],
    "scram_nullpool": [50],
    "scram_loop": [250],
    "peer_taskiq": [200],
    "peer_arq": [150],
    "pipeline_nullpool": [2000],
    "pipeline_loop": [1000],
    "pipeline_direct": [2000],
    "bridge_async_to_sync": [400],
    "bridge_nullpool": [400],
    "bridge_loop": [90],
    "bridge_loop_inline": [15],
    "bridge_floor": [20],
    "rss_nullpool_before": [100],
    "rss_nullpool_after": [104],
    "rss_loop_before": [100],
    "rss_loop_after": [110],
}


def _row(label: str) -> tuple[str, str]:
    matches = [r for r in rows(SAMPLES) if r.label.startswith(label)]
    assert len(matches) == 1, label
    return matches[0].target, matches[0].verdict


def test_the_project_ceiling_is_compared_with_bare_celery() -> None:
    assert _row("1. empty task `tests.noop`") == ("≥ 0.9x bare Celery: 0.90x", "met")


def test_loop_is_compared_with_nullpool_the_ceiling_and_the_sync_reference() -> None:
    target, verdict = _row("2. `process_article`, loop")
    assert target == "≥ 3x nullpool: 3.00x; ≥ 0.6x ceiling: 0.67x; ≥ 0.9x sync reference: 0.94x"
    assert verdict == "met; met; met"


def test_the_scram_ratio_must_beat_the_trust_ratio() -> None:
    target, verdict = _row("2. scram-sha-256 login (private PostgreSQL), loop")
    assert target == "≥ 3x nullpool, more than with trust: 5.00x (trust: 3.00x)"
    assert verdict == "met; met"


def test_the_pipeline_is_compared_with_the_faster_peer() -> None:
    target, verdict = _row("3. `run_pipeline`, loop")
    assert target == "≥ 50% of direct: 50%; ≥ 4x the faster peer: 5.0x"
    assert verdict == "met; met"


def test_a_missed_target_says_so() -> None:
    assert _row("5. worker RSS (main + children), loop") == ("flat (≤ 5%): +10.0%", "MISSED")
    assert "nan" not in table(rows(SAMPLES))
