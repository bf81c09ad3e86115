"""`@async_task`'s reading of a function's signature and its payload validation, without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from articles_client.contract import (
    CONTRACT_VERSION,
    PAYLOADS,
    PUBLIC_TASKS,
    IngestPayload,
    ProcessArticlePayload,
)
from articles_client.errors import InvalidPayload
from worker.runtime.task_context import TaskContext
from worker.runtime.task_signature import TaskSignature, read_signature

pytestmark = pytest.mark.unit


async def _session_task(
    session: AsyncSession, ctx: TaskContext, *, status: str, limit: int = 10
) -> None:
    """Session first, a context, a required and a defaulted argument."""


async def _typed(*, at: datetime, ref: UUID, price: Decimal, tags: list[str] | None = None) -> None:
    """Types JSON carries as strings."""


async def _two(x: int, y: int) -> None:
    """Positional parameters."""


def _sig(fn: Any) -> TaskSignature:
    return read_signature(fn, "t.name", TaskContext)


def test_session_and_context_are_injected_not_payload() -> None:
    sig = _sig(_session_task)
    assert (sig.session, sig.context, sig.fields) == (True, "ctx", ("status", "limit"))
    assert sig.parse([], {"status": "done"}) == {"status": "done"}  # the default is the function's
    assert sig.parse(["done", 3], {}) == {"status": "done", "limit": 3}


def test_no_session_without_an_asyncsession_first_parameter() -> None:
    sig = _sig(_two)
    assert (sig.session, sig.context, sig.fields) == (False, None, ("x", "y"))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ([], {"status": 5}, "t.name: status: Input should be a valid string"),
        ([], {"status": "a", "limit": "3"}, "limit: Input should be a valid integer"),
        ([], {"status": "a", "limit": True}, "limit: Input should be a valid integer"),
        ([], {"status": "a", "bogus": 1}, "bogus: Extra inputs are not permitted"),
        ([], {}, "status: Field required"),
        (["a", 1, 2], {}, "t.name takes at most 2 positional argument(s) (status, limit), got 3"),
        (["a"], {"status": "b"}, "t.name got status both positionally and by name"),
    ],
)
def test_bad_payloads_name_the_field(args: list[Any], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPayload, match=r"^t\.name") as caught:
        _sig(_session_task).parse(args, kwargs)
    assert message in str(caught.value)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(InvalidPayload) as caught:
        _sig(_typed).parse([], {"at": 5, "ref": "nope", "price": True, "x": 1})
    text = str(caught.value)
    for name in ("at:", "ref:", "price:", "x: Extra inputs are not permitted"):
        assert name in text


def test_strings_become_datetimes_uuids_and_decimals_where_annotated() -> None:
    ref = uuid4()
    parsed = _sig(_typed).parse(
        [], {"at": "2026-11-26T12:00:00Z", "ref": str(ref), "price": "1.10", "tags": ["a"]}
    )
    assert parsed == {
        "at": datetime(2026, 11, 26, 12, tzinfo=UTC),
        "ref": ref,
        "price": Decimal("1.10"),
        "tags": ["a"],
    }


def test_objects_a_python_sender_serialised_are_accepted_too() -> None:
    # kombu's JSON decoder gives these back as objects, not strings.
    at, ref = datetime(2026, 1, 1, tzinfo=UTC), uuid4()
    parsed = _sig(_typed).parse([], {"at": at, "ref": ref, "price": Decimal("2")})
    assert parsed == {"at": at, "ref": ref, "price": Decimal("2")}


def test_a_string_is_not_a_number_and_a_number_not_a_string() -> None:
    sig = _sig(_two)
    with pytest.raises(InvalidPayload, match=r"x: Input should be a valid integer"):
        sig.parse(["1", 2], {})
    with pytest.raises(InvalidPayload, match=r"status: Input should be a valid string"):
        _sig(_session_task).parse([1], {})


async def _var(*args: int) -> None: ...
async def _unannotated(x) -> None: ...  # type: ignore[no-untyped-def]
async def _late_session(x: int, session: AsyncSession) -> None: ...
async def _two_contexts(a: TaskContext, b: TaskContext) -> None: ...
async def _positional_only(x: int, /) -> None: ...


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_var, r"\*args and \*\*kwargs cannot be validated"),
        (_unannotated, "parameter 'x' needs an annotation"),
        (_late_session, "the AsyncSession must be the first parameter"),
        (_two_contexts, "only one TaskContext parameter"),
        (_positional_only, "arguments are passed by name"),
    ],
)
def test_signatures_that_cannot_work_fail_at_decoration(fn: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        _sig(fn)


def test_timedelta_takes_an_iso_duration() -> None:
    async def fn(*, every: timedelta) -> None: ...

    assert _sig(fn).parse([], {"every": "PT1H"}) == {"every": timedelta(hours=1)}


def test_decorator_refuses_what_it_cannot_honour() -> None:
    from worker import async_task

    async def no_session(*, x: int) -> None: ...

    def not_async(*, x: int) -> None: ...

    with pytest.raises(TypeError, match="once=True needs an AsyncSession first parameter"):
        async_task(name="t.once", once=True)(no_session)
    with pytest.raises(TypeError, match="decorates an `async def` function"):
        async_task(name="t.sync")(not_async)
    with pytest.raises(TypeError, match="take a TaskContext parameter instead"):
        async_task(name="t.bind", bind=True)
    with pytest.raises(TypeError, match="base must be a subclass of AsyncTask"):
        async_task(name="t.base", base=object)


def test_celery_options_pass_through() -> None:
    from examples import user_tasks

    assert user_tasks.slow_write.soft_time_limit == 1
    assert user_tasks.flaky.max_retries == 5
    assert user_tasks.add.name == "examples.add"
    # The shared base: transient errors retry, bad payloads never do.
    assert user_tasks.add.autoretry_for == user_tasks.count_articles.autoretry_for
    assert "InvalidPayload" in {cls.__name__ for cls in user_tasks.add.throws}


def test_a_lone_surrogate_is_named_not_a_crash() -> None:
    # JSON may carry "\ud800"; decoded, it is a str no UTF-8 encoder accepts.
    with pytest.raises(InvalidPayload, match=r"^t\.name: status: must be valid UTF-8$"):
        _sig(_session_task).parse([], {"status": "\ud800"})


async def _contract_task(
    session: AsyncSession, payload: ProcessArticlePayload, ctx: TaskContext
) -> None:
    """A contract-model payload: what the article tasks declare."""


def _contract_sig(fn: Any) -> TaskSignature:
    return read_signature(fn, "articles.process_article", TaskContext, ProcessArticlePayload)


def test_a_contract_model_payload_is_read_as_the_contract_reads_it() -> None:
    sig = _contract_sig(_contract_task)
    assert (sig.session, sig.context, sig.fields) == (True, "ctx", ("payload",))
    expected = {"payload": ProcessArticlePayload(article_id=7)}
    assert sig.parse([], {"article_id": 7}) == expected
    assert sig.parse([7], {}) == expected  # positional, in field order
    # A chain step: ingest's result in first position names the article.
    assert sig.parse([{"article_id": 7, "created": True}], {}) == expected
    with pytest.raises(InvalidPayload, match="article_id: Input should be a valid integer"):
        sig.parse([], {"article_id": "7"})


def test_a_contract_model_honours_the_senders_version() -> None:
    sig = _contract_sig(_contract_task)
    newer = f"{CONTRACT_VERSION.split('.')[0]}.999"
    # A newer minor version may add optional fields: dropped, not an error.
    assert sig.parse([], {"article_id": 7, "priority": 1}, newer) == {
        "payload": ProcessArticlePayload(article_id=7)
    }
    # From this version (or no header) an unknown field is a typo.
    with pytest.raises(InvalidPayload, match="priority: Extra inputs are not permitted"):
        sig.parse([], {"article_id": 7, "priority": 1}, CONTRACT_VERSION)
    with pytest.raises(InvalidPayload, match="the major versions differ"):
        sig.parse([], {"article_id": 7}, "999.0")


async def _model_and_more(payload: ProcessArticlePayload, *, extra: int) -> None: ...
async def _other_model(payload: IngestPayload) -> None: ...


@pytest.mark.parametrize("fn", [_model_and_more, _other_model])
def test_a_contract_model_takes_exactly_one_parameter_annotated_so(fn: Any) -> None:
    with pytest.raises(TypeError, match="exactly one payload parameter, annotated Process"):
        _contract_sig(fn)


def test_the_article_tasks_are_async_tasks_with_their_contract() -> None:
    from tasks import articles, maintenance
    from worker.runtime.async_tasks import AsyncTask

    tasks = [articles.ingest, articles.process_article, articles.run_pipeline]
    tasks.append(maintenance.reap_stale)
    assert [t.name for t in tasks] == list(PUBLIC_TASKS)
    assert all(isinstance(t, AsyncTask) for t in tasks)
    assert [t.spec.model for t in tasks] == [PAYLOADS[name] for name in PUBLIC_TASKS]
