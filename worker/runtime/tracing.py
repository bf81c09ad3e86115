"""OpenTelemetry tracing for the worker, configured by the standard `OTEL_*` environment variables.

Off unless `OTEL_TRACES_EXPORTER` or an OTLP endpoint variable is set (and `OTEL_SDK_DISABLED` is
not true): then nothing of the SDK is even imported. On, each process that runs tasks gets a
`TracerProvider` (after fork: a batch processor's thread does not survive one), OpenTelemetry's
Celery instrumentation (which continues the trace context a caller put into the message headers)
and its SQLAlchemy instrumentation on the bridge's engine. The bridge copies context variables into
the coroutine, so SQL spans are children of the task span. Needs the `otel` extra.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points
from typing import Any

from articles_client.errors import ConfigurationError

log = logging.getLogger(__name__)

SWITCHES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
_provider: Any = None
_pid: int | None = None


def enabled() -> bool:
    """True when the environment asks for traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return any(os.environ.get(name, "").strip() for name in SWITCHES)


def configure() -> bool:
    """Set up tracing in this process if the environment asks for it; True if it is on."""
    global _provider, _pid
    if not enabled() or _pid == os.getpid():
        return _pid == os.getpid()
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            f"OTEL_* tracing variables are set but the `otel` extra is not installed ({exc.name}):"
            " pip install 'articles-worker[otel]'"
        ) from None
    # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    resource = Resource.create({"service.name": "articles-worker"} | _service_from_env())
    provider = TracerProvider(resource=resource)
    for exporter in _exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _provider, _pid = provider, os.getpid()
    log.info("tracing on: %s", os.environ.get("OTEL_TRACES_EXPORTER", "otlp"))
    return True


def _service_from_env() -> dict[str, str]:
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip()
    return {"service.name": name} if name else {}


def _exporters() -> list[Any]:
    """The exporters OTEL_TRACES_EXPORTER names (default otlp), found by their entry points."""
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
    found = []
    for name in (n.strip() for n in names if n.strip()):
        matches = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not matches:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER: no exporter named {name!r} is installed "
                "(otlp needs opentelemetry-exporter-otlp)"
            )
        found.append(next(iter(matches)).load()())
    return found


def instrument_engine(engine: Any) -> None:
    """Trace the SQL of this process's engine (a no-op while tracing is off)."""
    if _pid != os.getpid():
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The instrumentation declares sqlalchemy < 2.1 and silently does nothing on 2.1 unless told
    # to skip that check; it only listens to engine events, which 2.1 keeps (tested).
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=_provider, skip_dep_check=True
    )


def shutdown() -> None:
    """Flush and stop this process's spans (prefork children exit without running atexit)."""
    global _pid
    if _pid == os.getpid() and _provider is not None:
        _provider.shutdown()
        _pid = None
