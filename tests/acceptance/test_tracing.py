"""Tracing: a caller's span, the worker's task span and the task's SQL spans share one trace id.

The test process is the caller (as a FastAPI service would be): its own tracer provider, and
OpenTelemetry's Celery instrumentation, which injects the trace context into the message headers.
The worker is a real prefork subprocess with `OTEL_TRACES_EXPORTER=console`: it prints its spans.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from articles_client import contract
from tests.integration.helpers import add_articles
from tests.support.env import service_env
from tests.support.processes import celery_worker
from worker.runtime.app import app

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

pytestmark = pytest.mark.acceptance

QUEUE = "tracing-tests"


@pytest.fixture
def caller() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    """A tracer of the test's own, and Celery's instrumentation on the publishing side."""
    exporter = InMemorySpanExporter()
    provider = otel_sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider.get_tracer("caller"), exporter
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


def printed_spans(text: str) -> list[dict[str, Any]]:
    """The JSON objects ConsoleSpanExporter printed among the worker's log lines."""
    decoder = json.JSONDecoder()
    spans, index = [], text.find("{\n")
    while index != -1:
        try:
            span, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            end = index + 1
        else:
            if isinstance(span, dict) and "context" in span:
                spans.append(span)
        index = text.find("{\n", end)
    return spans


def test_caller_task_and_sql_spans_share_one_trace(
    caller: tuple[Any, InMemorySpanExporter], clean_db: str, clean_redis: Any, tmp_path: Path
) -> None:
    tracer, exported = caller
    env = service_env(
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME="articles-worker-test",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    (article_id,) = add_articles(1)
    with celery_worker(env, tmp_path, concurrency=1, extra_args=("-Q", QUEUE)) as worker:
        with tracer.start_as_current_span("caller request") as span:
            trace_id = f"0x{span.get_span_context().trace_id:032x}"
            result = app.send_task(
                contract.PROCESS_ARTICLE, kwargs={"article_id": article_id}, queue=QUEUE
            )
        assert result.get(timeout=60)["status"] == "done"
        # The task span ends after the result is stored; the batch processor prints it soon
        # after (OTEL_BSP_SCHEDULE_DELAY). Stopping earlier could kill the child before that.
        worker.wait_for_log(f'"name": "run/{contract.PROCESS_ARTICLE}"', timeout=30)
    spans = printed_spans(worker.log())

    ours = [s for s in spans if s["context"]["trace_id"] == trace_id]
    names = [s["name"] for s in ours]
    assert f"run/{contract.PROCESS_ARTICLE}" in names, names
    sql = [s for s in ours if s.get("attributes", {}).get("db.system") == "postgresql"]
    assert sql, f"no SQL span in the caller's trace: {names}"
    assert any(s["name"].startswith("UPDATE") for s in sql), names
    assert {s["resource"]["attributes"]["service.name"] for s in ours} == {"articles-worker-test"}
    # The caller's own spans: its request and the publish, in the same trace.
    published = [s for s in exported.get_finished_spans() if s.name.startswith("apply_async/")]
    assert published
    assert {f"0x{s.context.trace_id:032x}" for s in published} == {trace_id}


def test_tracing_is_off_and_imports_nothing_without_otel_variables() -> None:
    code = (
        "import sys; from worker.runtime import tracing; on = tracing.configure(); "
        "print(on, any(m.startswith('opentelemetry.sdk') for m in sys.modules))"
    )
    env = {k: v for k, v in service_env().items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["False", "False"], done.stderr
