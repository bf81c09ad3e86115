"""A newer and an older contract meeting during a rolling deploy, each client in a fresh
interpreter and the jobs on the real in-process worker.

The rule (see `articles_client.contract.parse_payload`): the client stamps its contract version in
the `articles_contract` header. A worker reading a NEWER minor version drops the fields it does not
know, with a warning (a minor version only adds optional fields); from the same or an older
version an unknown field is a typo and fails, a missing required field always fails, and another
major version is refused.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.integration.helpers import sql
from tests.integration.test_producer import probe

pytestmark = pytest.mark.integration

BODY = "One two three. Four five six seven."

# A client of contract 1.1: its payload model has one more optional field, validated on its side
# as strictly as ever, and its messages carry version 1.1.
NEWER_CLIENT = f"""
    import json
    from articles_client import contract
    from articles_client.producer import client_app

    contract.CONTRACT_VERSION = "1.1"

    class IngestPayloadNext(contract.IngestPayload):
        language: str | None = None

    def send(kwargs, headers=None):
        try:
            payload = contract.parse_payload(IngestPayloadNext, contract.INGEST, (), kwargs)
            kwargs = payload.model_dump(exclude_defaults=True)
        except contract.InvalidPayload:
            pass  # a raw sender: what arrives on the wire is the point
        result = client_app().send_task(contract.INGEST, kwargs=kwargs, headers=headers)
        try:
            return {{"ok": result.get(timeout=60)}}
        except Exception as exc:
            return {{"error": f"{{type(exc).__name__}}: {{exc}}"}}

    print(json.dumps({{
        "new_field": send({{"title": "newer", "body": "{BODY}", "language": "en"}}),
        "required_typo": send({{"titel": "newer", "body": "{BODY}"}}),
        "same_version": send(
            {{"title": "same", "body": "{BODY}", "language": "en"}},
            headers={{"articles_contract": "1.0"}},
        ),
        "other_major": send(
            {{"title": "major", "body": "{BODY}"}}, headers={{"articles_contract": "2.0"}}
        ),
    }}))
"""


def test_newer_client_to_older_worker(live_worker: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="articles_client.contract"):
        report = probe(NEWER_CLIENT)
    # An optional field the worker does not know yet: accepted, ignored, and said so.
    assert report["new_field"]["ok"]["created"] is True
    assert sql("SELECT title FROM articles") == [{"title": "newer"}]
    assert "ignoring field(s) language sent under contract 1.1 (this side speaks 1.0)" in (
        caplog.text
    )
    # A typo in a required field still fails, naming the field that is missing.
    assert report["required_typo"]["error"] == (
        "InvalidPayload: articles.ingest: title: Field required"
    )
    # The same field from a sender of the worker's own version is an error, not a guess.
    assert report["same_version"]["error"] == (
        "InvalidPayload: articles.ingest: language: Extra inputs are not permitted"
    )
    assert "major versions differ" in report["other_major"]["error"]


# A client of contract 1.0 (this one) meeting a worker of 1.1: `tests.ingest_next` validates
# with the 1.1 model variant (tests/support/tasks.py).
OLDER_CLIENT = """
    import json
    from articles_client.producer import client_app

    def send(kwargs):
        result = client_app().send_task("tests.ingest_next", kwargs=kwargs)
        try:
            return {"ok": result.get(timeout=60)}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    print(json.dumps({
        "old_payload": send({"title": "older", "body": "b"}),
        "unknown_field": send({"title": "older", "body": "b", "lang": "en"}),
    }))
"""


def test_older_client_to_newer_worker(live_worker: Any) -> None:
    report = probe(OLDER_CLIENT)
    # What 1.0 sends is a valid 1.1 payload: the new optional field takes its default.
    assert report["old_payload"]["ok"] == {
        "payload": {
            "title": "older",
            "body": "b",
            "source_url": None,
            "external_id": None,
            "language": None,
        },
        "sender_version": "1.0",
    }
    # An older sender cannot know a field the newer worker does not know either: a typo.
    assert report["unknown_field"]["error"] == (
        "InvalidPayload: tests.ingest_next: lang: Extra inputs are not permitted"
    )
