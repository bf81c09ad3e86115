"""Read articles from a JSON Lines file: one object per line, validated like `articles.ingest`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from articles_client import contract
from articles_client.contract import IngestPayload, parse_payload
from articles_client.errors import InvalidPayload


@dataclass
class Parsed:
    articles: list[IngestPayload] = field(default_factory=list)
    # (line number, what is wrong with it), in file order.
    errors: list[tuple[int, str]] = field(default_factory=list)


def parse_lines(lines: Iterable[str]) -> Parsed:
    """Validate every line; blank lines are skipped, bad lines are collected with their number."""
    parsed = Parsed()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            parsed.articles.append(_parse(line))
        except ValueError as exc:
            parsed.errors.append((number, str(exc)))
    return parsed


def _parse(line: str) -> IngestPayload:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return parse_payload(IngestPayload, contract.INGEST, (), data)
    except InvalidPayload as exc:
        raise ValueError(str(exc).removeprefix(f"{contract.INGEST}: ")) from None
