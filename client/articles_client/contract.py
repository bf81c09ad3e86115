"""The public task contract: names, queue and payloads.

Other services, in any language, send these task names with JSON keyword arguments onto the
default queue. The producer validates with the same models the tasks use, so a bad payload is
refused before it is sent; the worker validates again because not every sender is this producer.
This module imports nothing from the database layer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from articles_client.errors import InvalidPayload

__all__ = [
    "CONTRACT_HEADER",
    "CONTRACT_VERSION",
    "INGEST",
    "INGEST_QUEUE",
    "MAINTENANCE_QUEUE",
    "MAIN_WORKER_QUEUES",
    "MAX_BATCH_SIZE",
    "MAX_BODY_CHARS",
    "MAX_EXTERNAL_ID_CHARS",
    "MAX_ID",
    "MAX_LIMIT",
    "MAX_TITLE_CHARS",
    "MAX_URL_CHARS",
    "PIPELINE_QUEUE",
    "PIPELINE_WORKER_QUEUES",
    "PROCESS_ARTICLE",
    "PROCESS_QUEUE",
    "PUBLIC_TASKS",
    "QUEUE",
    "REAP_STALE",
    "ROUTES",
    "RUN_PIPELINE",
    "WORK_QUEUES",
    "IngestPayload",
    "IngestResult",
    "Payload",
    "PipelineRunPayload",
    "ProcessArticlePayload",
    "ReapPayload",
    "describe_validation",
    "parse_payload",
]

# The default queue: the entry point for clients that cannot route (celery-node sends every
# task here). Workers always consume it.
QUEUE: Final = "celery"

# The contract's version, sent by the client in this message header. MAJOR changes break old
# workers; a MINOR version only adds optional fields (see `parse_payload` for the rule).
CONTRACT_VERSION: Final = "1.0"
CONTRACT_HEADER: Final = "articles_contract"

INGEST: Final = "articles.ingest"
PROCESS_ARTICLE: Final = "articles.process_article"
RUN_PIPELINE: Final = "articles.run_pipeline"
REAP_STALE: Final = "articles.reap_stale"

PUBLIC_TASKS: Final = (INGEST, PROCESS_ARTICLE, RUN_PIPELINE, REAP_STALE)

# One queue per kind of work, so a long pipeline run never holds up an ingest: the default
# deployment gives the pipeline queue workers of its own (README, "Queues by kind of work").
INGEST_QUEUE: Final = "articles.ingest"
PROCESS_QUEUE: Final = "articles.process"
PIPELINE_QUEUE: Final = "articles.pipeline"
MAINTENANCE_QUEUE: Final = "articles.maintenance"
WORK_QUEUES: Final = (QUEUE, INGEST_QUEUE, PROCESS_QUEUE, PIPELINE_QUEUE, MAINTENANCE_QUEUE)
# The default deployment (`make worker`, compose): the pipeline queue has workers of its own, so
# every other kind of work keeps free slots however long the runs are.
PIPELINE_WORKER_QUEUES: Final = (PIPELINE_QUEUE,)
MAIN_WORKER_QUEUES: Final = tuple(q for q in WORK_QUEUES if q not in PIPELINE_WORKER_QUEUES)
ROUTES: Final[Mapping[str, str]] = {
    INGEST: INGEST_QUEUE,
    PROCESS_ARTICLE: PROCESS_QUEUE,
    RUN_PIPELINE: PIPELINE_QUEUE,
    REAP_STALE: MAINTENANCE_QUEUE,
}

MAX_TITLE_CHARS: Final = 500
MAX_BODY_CHARS: Final = 1_000_000
MAX_URL_CHARS: Final = 2048
MAX_EXTERNAL_ID_CHARS: Final = 255
MAX_BATCH_SIZE: Final = 10_000
MAX_LIMIT: Final = 10_000_000
MAX_ID: Final = 2**63 - 1

_url_adapter: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)
_VERSION = re.compile(r"(\d{1,4})\.(\d{1,4})")

log = logging.getLogger(__name__)


def _storable(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL, and a lone surrogate (from JSON "\ud800") is not UTF-8.
    # Runs before the str check, whose own message for a surrogate is an opaque parse error.
    if not isinstance(value, str):
        return value  # the strict str check names the wrong type
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 (it contains a lone surrogate)") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _http_url(value: str) -> str:
    _url_adapter.validate_python(value)
    return value


# Length limits sit on the str itself, so their message reads "String should have at most N
# characters" (after a custom validator it would read "Value should have at most N items").
Storable = BeforeValidator(_storable)
NotBlank = AfterValidator(_not_blank)
Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE_CHARS), Storable, NotBlank]
Body = Annotated[str, Field(min_length=1, max_length=MAX_BODY_CHARS), Storable, NotBlank]
SourceUrl = Annotated[str, Field(max_length=MAX_URL_CHARS), Storable, AfterValidator(_http_url)]
ExternalId = Annotated[
    str, Field(min_length=1, max_length=MAX_EXTERNAL_ID_CHARS), Storable, NotBlank
]


class Payload(BaseModel):
    # strict: "12" is not an id and true is not a number; forbid: a typo in a field name is an
    # error, not a silently ignored argument.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class IngestPayload(Payload):
    """`articles.ingest`: store one article as `pending`. Idempotent on `external_id`."""

    title: Title
    body: Body
    source_url: SourceUrl | None = None
    external_id: ExternalId | None = None


class ProcessArticlePayload(Payload):
    """`articles.process_article`: process one article by id."""

    article_id: int = Field(ge=1, le=MAX_ID)


class PipelineRunPayload(Payload):
    """`articles.run_pipeline`: claim pending articles in batches and process them."""

    batch_size: int = Field(default=100, ge=1, le=MAX_BATCH_SIZE)
    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)


class ReapPayload(Payload):
    """`articles.reap_stale`: return articles whose claim lease expired. No arguments."""


class IngestResult(Payload):
    """What `articles.ingest` returns. In a chain or chord it arrives as the next task's first
    positional argument, so it is validated as strictly as a payload."""

    article_id: int = Field(ge=1, le=MAX_ID)
    created: bool


P = TypeVar("P", bound="Payload")

PAYLOADS: Final[Mapping[str, type[Payload]]] = {
    INGEST: IngestPayload,
    PROCESS_ARTICLE: ProcessArticlePayload,
    RUN_PIPELINE: PipelineRunPayload,
    REAP_STALE: ReapPayload,
}


def parse_payload(
    model: type[P],
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    sender_version: str | None = None,
    own_version: str = CONTRACT_VERSION,
) -> P:
    """Validate a job's arguments; raise `InvalidPayload` with every problem named.

    Positional arguments map onto the fields in declared order, so `send_task(name, args=[42])`
    from a client without keyword arguments works too. A canvas predecessor's result in first
    position is taken where it makes sense (`chain(ingest, process_article)`: its article id;
    a chord of ingests into `run_pipeline`: checked, then not needed).

    Contract evolution (`sender_version`, from the message's `articles_contract` header): a
    sender of a newer MINOR version may send optional fields this side does not know; they are
    dropped with a warning. From the same or an older version, or with no header, an unknown
    field is an error (a typo), and a missing required field is always one. Another MAJOR
    version is refused.
    """
    args, kwargs = _take_previous_result(model, task_name, args, kwargs)
    fields = list(model.model_fields)
    if len(args) > len(fields):
        raise InvalidPayload(
            f"{task_name} takes at most {len(fields)} positional argument(s) "
            f"({', '.join(fields) or 'none'}), got {len(args)}"
        )
    data = dict(zip(fields, args, strict=False))
    clash = sorted(set(data) & set(kwargs))
    if clash:
        raise InvalidPayload(f"{task_name} got {', '.join(clash)} both positionally and by name")
    data.update(kwargs)
    if sender_version is not None and _is_newer_minor(task_name, sender_version, own_version):
        data = _drop_unknown(model, task_name, data, sender_version, own_version)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload(f"{task_name}: {describe_validation(exc)}") from None


def _version(task_name: str, value: object) -> tuple[int, int]:
    match = _VERSION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidPayload(
            f"{task_name}: header {CONTRACT_HEADER} must be MAJOR.MINOR, got {value!r:.40}"
        )
    return int(match[1]), int(match[2])


def _is_newer_minor(task_name: str, sender: str, own: str) -> bool:
    theirs, ours = _version(task_name, sender), _version(task_name, own)
    if theirs[0] != ours[0]:
        raise InvalidPayload(
            f"{task_name}: sent under contract {sender}, which this side ({own}) cannot read: "
            "the major versions differ"
        )
    return theirs > ours


def _drop_unknown(
    model: type[Payload], task_name: str, data: dict[str, Any], sender: str, own: str
) -> dict[str, Any]:
    # A newer minor version only adds optional fields, so what this side does not know it may
    # ignore: the job still does what this version of the contract promises.
    unknown = sorted(set(data) - set(model.model_fields))
    if not unknown:
        return data
    # Names come from the sender: a bounded few, each cut short, keep the log line readable.
    names = ", ".join(name[:40] for name in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
    log.warning(
        "%s: ignoring field(s) %s sent under contract %s (this side speaks %s)",
        task_name,
        names,
        sender,
        own,
    )
    return {key: value for key, value in data.items() if key in model.model_fields}


def _ingest_result(task_name: str, value: Any) -> IngestResult:
    try:
        return IngestResult.model_validate(value)
    except ValidationError as exc:
        raise InvalidPayload(
            f"{task_name}: the previous task's result: {describe_validation(exc)}"
        ) from None


def _after_ingest(task_name: str, previous: Any) -> dict[str, Any] | None:
    # chain(ingest.s(...), process_article.s()): process the article just ingested.
    if not isinstance(previous, dict):
        return None
    return {"article_id": _ingest_result(task_name, previous).article_id}


def _after_ingests(task_name: str, previous: Any) -> dict[str, Any] | None:
    # chord([ingest.s(...), ...], run_pipeline.s()): the ingested articles are pending, and the
    # run claims every pending article, so the results are checked but add no argument.
    if not isinstance(previous, list):
        return None
    for item in previous:
        _ingest_result(task_name, item)
    return {}


# Which canvas predecessors each task accepts in first position.
_PREVIOUS: Final[Mapping[type[Payload], Callable[[str, Any], dict[str, Any] | None]]] = {
    ProcessArticlePayload: _after_ingest,
    PipelineRunPayload: _after_ingests,
}


def _take_previous_result(
    model: type[Payload], task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[Sequence[Any], Mapping[str, Any]]:
    accept = _PREVIOUS.get(model)
    if accept is None or not args:
        return args, kwargs
    taken = accept(task_name, args[0])
    if taken is None:
        return args, kwargs  # not a canvas result: validated as a plain argument
    clash = sorted(set(taken) & set(kwargs))
    if clash:
        raise InvalidPayload(
            f"{task_name} got {', '.join(clash)} both from the previous task and by name"
        )
    return args[1:], {**kwargs, **taken}


def describe_validation(exc: ValidationError) -> str:
    """One line per problem, without echoing the (possibly huge or secret) input value."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
