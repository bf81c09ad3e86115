"""The public task contract: names, queue, payload validation; messages name the field."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from articles_client import contract
from articles_client.contract import (
    IngestPayload,
    PipelineRunPayload,
    ProcessArticlePayload,
    ReapPayload,
    parse_payload,
)
from articles_client.errors import InvalidPayload

pytestmark = pytest.mark.unit

GOOD_INGEST: dict[str, Any] = {"title": "A title", "body": "Some body."}


def ingest(**changes: Any) -> IngestPayload:
    return parse_payload(IngestPayload, contract.INGEST, (), {**GOOD_INGEST, **changes})


def rejects(model: type[contract.Payload], task: str, **kwargs: Any) -> str:
    with pytest.raises(InvalidPayload) as caught:
        parse_payload(model, task, (), kwargs)
    message = str(caught.value)
    assert message.startswith(f"{task}: ")
    return message


def test_task_names_and_queue_are_the_public_contract() -> None:
    # Other services send these strings by name: changing one breaks them.
    assert contract.QUEUE == "celery"
    assert contract.PUBLIC_TASKS == (
        "articles.ingest",
        "articles.process_article",
        "articles.run_pipeline",
        "articles.reap_stale",
    )
    assert set(contract.PAYLOADS) == set(contract.PUBLIC_TASKS)


def test_a_good_ingest_payload() -> None:
    payload = ingest(source_url="https://example.com/a?b=1", external_id="feed-1")
    assert payload.model_dump(exclude_defaults=True) == {
        **GOOD_INGEST,
        "source_url": "https://example.com/a?b=1",
        "external_id": "feed-1",
    }


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("title", contract.MAX_TITLE_CHARS),
        ("body", contract.MAX_BODY_CHARS),
        ("external_id", contract.MAX_EXTERNAL_ID_CHARS),
    ],
)
def test_text_fields_accept_their_limit_and_refuse_one_more(field: str, limit: int) -> None:
    assert len(getattr(ingest(**{field: "x" * limit}), field)) == limit
    message = rejects(IngestPayload, contract.INGEST, **{**GOOD_INGEST, field: "x" * (limit + 1)})
    assert f"{field}: String should have at most {limit} characters" in message


def test_source_url_length_limit() -> None:
    base = "https://example.com/"
    at_limit = base + "a" * (contract.MAX_URL_CHARS - len(base))
    assert ingest(source_url=at_limit).source_url == at_limit
    message = rejects(IngestPayload, contract.INGEST, **GOOD_INGEST, source_url=at_limit + "a")
    assert "source_url: String should have at most 2048 characters" in message


@pytest.mark.parametrize("url", ["not a url", "ftp://example.com/file", "example.com/page"])
def test_source_url_must_be_http(url: str) -> None:
    assert "source_url" in rejects(IngestPayload, contract.INGEST, **GOOD_INGEST, source_url=url)


@pytest.mark.parametrize("field", ["title", "body", "external_id"])
@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_empty_or_blank_text_is_refused(field: str, value: str) -> None:
    assert field in rejects(IngestPayload, contract.INGEST, **{**GOOD_INGEST, field: value})


@pytest.mark.parametrize("field", ["title", "body"])
def test_required_fields_are_named_when_missing(field: str) -> None:
    kwargs = {k: v for k, v in GOOD_INGEST.items() if k != field}
    assert f"{field}: Field required" in rejects(IngestPayload, contract.INGEST, **kwargs)


@pytest.mark.parametrize("field", ["title", "body", "external_id", "source_url"])
def test_nul_is_refused(field: str) -> None:
    value = "https://example.com/\x00" if field == "source_url" else "bad\x00value"
    message = rejects(IngestPayload, contract.INGEST, **{**GOOD_INGEST, field: value})
    assert f"{field}: Value error, must not contain NUL bytes" in message


@pytest.mark.parametrize("field", ["title", "body", "external_id"])
def test_lone_surrogate_is_refused(field: str) -> None:
    # What JSON "\ud800" decodes to: a str that cannot be encoded as UTF-8 for PostgreSQL.
    message = rejects(IngestPayload, contract.INGEST, **{**GOOD_INGEST, field: "x\ud800y"})
    assert f"{field}: Value error, must be valid UTF-8" in message


@pytest.mark.parametrize("value", [42, b"bytes", ["list"], None])
def test_ingest_types_are_strict(value: Any) -> None:
    assert "title" in rejects(IngestPayload, contract.INGEST, **{**GOOD_INGEST, "title": value})


def test_extra_fields_are_refused_by_name() -> None:
    message = rejects(IngestPayload, contract.INGEST, **GOOD_INGEST, titel="typo")
    assert "titel: Extra inputs are not permitted" in message


def test_every_problem_is_reported_at_once() -> None:
    message = rejects(IngestPayload, contract.INGEST, title="", body="", extra=1)
    assert "title" in message
    assert "body" in message
    assert "extra" in message


def test_messages_do_not_echo_the_input() -> None:
    secret = "s3cr3t-" + "x" * 600
    message = rejects(IngestPayload, contract.INGEST, title=secret, body="b")
    assert "s3cr3t" not in message


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("12", "Input should be a valid integer"),
        (True, "Input should be a valid integer"),
        (1.0, "Input should be a valid integer"),
        (0, "Input should be greater than or equal to 1"),
        (-5, "Input should be greater than or equal to 1"),
        (2**63, "Input should be less than or equal to"),
        (None, "Input should be a valid integer"),
    ],
)
def test_article_id_is_a_strict_positive_bigint(value: Any, fragment: str) -> None:
    message = rejects(ProcessArticlePayload, contract.PROCESS_ARTICLE, article_id=value)
    assert f"article_id: {fragment}" in message


def test_article_id_bounds() -> None:
    for good in (1, 2**63 - 1):
        payload = parse_payload(
            ProcessArticlePayload, contract.PROCESS_ARTICLE, (), {"article_id": good}
        )
        assert payload.article_id == good


def test_pipeline_defaults_and_limits() -> None:
    assert parse_payload(PipelineRunPayload, contract.RUN_PIPELINE, (), {}).model_dump() == {
        "batch_size": 100,
        "limit": None,
    }
    ok = parse_payload(
        PipelineRunPayload, contract.RUN_PIPELINE, (), {"batch_size": 10_000, "limit": 1}
    )
    assert (ok.batch_size, ok.limit) == (10_000, 1)
    for kwargs, field in [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 10_001}, "batch_size"),
        ({"batch_size": "5"}, "batch_size"),
        ({"limit": 0}, "limit"),
        ({"limit": contract.MAX_LIMIT + 1}, "limit"),
    ]:
        assert f"{field}: " in rejects(PipelineRunPayload, contract.RUN_PIPELINE, **kwargs)


def test_reap_takes_no_arguments() -> None:
    assert parse_payload(ReapPayload, contract.REAP_STALE, (), {}) == ReapPayload()
    assert "force" in rejects(ReapPayload, contract.REAP_STALE, force=True)


def test_positional_arguments_map_onto_fields_in_order() -> None:
    payload = parse_payload(
        IngestPayload, contract.INGEST, ["T", "B", "https://example.com/", "ext"], {}
    )
    assert (payload.title, payload.body, payload.source_url, payload.external_id) == (
        "T",
        "B",
        "https://example.com/",
        "ext",
    )
    mixed = parse_payload(IngestPayload, contract.INGEST, ["T"], {"body": "B"})
    assert (mixed.title, mixed.body) == ("T", "B")
    assert parse_payload(ProcessArticlePayload, contract.PROCESS_ARTICLE, [42], {}).article_id == 42


def test_too_many_positional_arguments() -> None:
    with pytest.raises(InvalidPayload, match=r"takes at most 1 positional argument\(s\)"):
        parse_payload(ProcessArticlePayload, contract.PROCESS_ARTICLE, [1, 2], {})
    with pytest.raises(InvalidPayload, match=r"takes at most 0 positional argument\(s\) \(none\)"):
        parse_payload(ReapPayload, contract.REAP_STALE, [1], {})


def test_an_argument_given_twice_is_refused() -> None:
    with pytest.raises(InvalidPayload, match="title both positionally and by name"):
        parse_payload(IngestPayload, contract.INGEST, ["T"], {"title": "again", "body": "B"})


def test_payloads_are_immutable() -> None:
    payload = ingest()
    with pytest.raises(Exception, match="frozen"):
        payload.title = "changed"  # type: ignore[misc]


# Canvas predecessors: chain(ingest, process_article) and chord(ingests, run_pipeline).


def test_process_article_takes_the_article_id_from_an_ingest_result() -> None:
    previous = {"article_id": 7, "created": False}
    payload = parse_payload(ProcessArticlePayload, contract.PROCESS_ARTICLE, (previous,), {})
    assert payload.article_id == 7


@pytest.mark.parametrize(
    ("previous", "fragment"),
    [
        ({"article_id": "7", "created": True}, "article_id: Input should be a valid integer"),
        ({"article_id": 7}, "created: Field required"),
        ({"article_id": 7, "created": True, "x": 1}, "x: Extra inputs are not permitted"),
    ],
)
def test_a_predecessor_result_is_validated_strictly(previous: Any, fragment: str) -> None:
    with pytest.raises(InvalidPayload, match="the previous task's result: " + fragment):
        parse_payload(ProcessArticlePayload, contract.PROCESS_ARTICLE, (previous,), {})


def test_an_article_id_from_both_predecessor_and_name_is_refused() -> None:
    previous = {"article_id": 7, "created": True}
    with pytest.raises(InvalidPayload, match="article_id both from the previous task"):
        parse_payload(
            ProcessArticlePayload, contract.PROCESS_ARTICLE, (previous,), {"article_id": 8}
        )


def test_run_pipeline_accepts_a_chord_of_ingest_results() -> None:
    header = [{"article_id": n, "created": True} for n in (1, 2)]
    payload = parse_payload(PipelineRunPayload, contract.RUN_PIPELINE, (header,), {"limit": 5})
    assert (payload.batch_size, payload.limit) == (100, 5)
    with pytest.raises(InvalidPayload, match="previous task's result"):
        parse_payload(PipelineRunPayload, contract.RUN_PIPELINE, ([{"run_id": 1}],), {})


def test_other_tasks_take_no_predecessor() -> None:
    with pytest.raises(InvalidPayload, match="title: Input should be a valid string"):
        parse_payload(IngestPayload, contract.INGEST, ({"article_id": 1, "created": True},), {})


# Contract evolution: the sender's version from the message header.


def evolve(sender: str | None, own: str = "1.0", **kwargs: Any) -> IngestPayload:
    return parse_payload(
        IngestPayload,
        contract.INGEST,
        (),
        {**GOOD_INGEST, **kwargs},
        sender_version=sender,
        own_version=own,
    )


def test_a_newer_minor_version_may_send_unknown_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="articles_client.contract"):
        assert evolve("1.1", language="en") == evolve(None)
    assert "ignoring field(s) language sent under contract 1.1 (this side speaks 1.0)" in (
        caplog.text
    )


@pytest.mark.parametrize(("sender", "own"), [(None, "1.0"), ("1.0", "1.0"), ("1.1", "1.2")])
def test_unknown_fields_from_the_same_or_an_older_version_are_typos(
    sender: str | None, own: str
) -> None:
    with pytest.raises(InvalidPayload, match="language: Extra inputs are not permitted"):
        evolve(sender, own, language="en")


def test_a_newer_minor_version_still_needs_the_required_fields() -> None:
    with pytest.raises(InvalidPayload, match=r"^articles\.ingest: title: Field required$"):
        parse_payload(
            IngestPayload, contract.INGEST, (), {"titel": "t", "body": "b"}, sender_version="1.7"
        )


@pytest.mark.parametrize(
    ("sender", "fragment"),
    [("2.0", "the major versions differ"), ("1", "must be MAJOR.MINOR"), ("x.y", "MAJOR.MINOR")],
)
def test_other_major_versions_and_bad_headers_are_refused(sender: str, fragment: str) -> None:
    with pytest.raises(InvalidPayload, match=fragment):
        evolve(sender)


def test_the_client_stamps_its_contract_version_on_every_message() -> None:
    from articles_client.app import build_app
    from articles_client.config import ClientConfig

    app = build_app(ClientConfig(broker_url="redis://127.0.0.1:6390/0"))
    message = app.amqp.as_task_v2("id-1", contract.INGEST, kwargs=GOOD_INGEST)
    assert message.headers[contract.CONTRACT_HEADER] == contract.CONTRACT_VERSION == "1.0"
