"""Pure article analysis: no database, no Celery. The rules are part of the task contract."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Final

from articles_client.errors import ArticleRejected

WORDS_PER_MINUTE: Final = 200
SUMMARY_SENTENCES: Final = 2
SUMMARY_MAX_CHARS: Final = 280
KEYWORD_COUNT: Final = 5
KEYWORD_MIN_LETTERS: Final = 4

STOP_WORDS: Final = frozenset(
    [
        "about",
        "above",
        "after",
        "again",
        "against",
        "also",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "could",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "from",
        "further",
        "have",
        "having",
        "here",
        "hers",
        "herself",
        "himself",
        "into",
        "itself",
        "just",
        "more",
        "most",
        "myself",
        "once",
        "only",
        "other",
        "ours",
        "ourselves",
        "over",
        "same",
        "should",
        "some",
        "such",
        "than",
        "that",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "under",
        "until",
        "very",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "whom",
        "will",
        "with",
        "would",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LETTERS = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True, slots=True)
class Analysis:
    word_count: int
    reading_time_seconds: int
    summary: str
    keywords: list[str]


def analyse(body: str) -> Analysis:
    """Compute the processed fields of an article; raise `ArticleRejected` for an empty body."""
    if not body or not body.strip():
        raise ArticleRejected("body is empty")
    word_count = len(body.split())
    return Analysis(
        word_count=word_count,
        reading_time_seconds=reading_time_seconds(word_count),
        summary=summarise(body),
        keywords=keywords(body),
    )


def reading_time_seconds(word_count: int) -> int:
    """ceil(word_count / 200 words per minute), in seconds."""
    return math.ceil(word_count * 60 / WORDS_PER_MINUTE)


def summarise(body: str) -> str:
    """The first two sentences, whitespace folded, cut at a word boundary to 280 characters."""
    text = " ".join(body.split())
    summary = " ".join(_SENTENCE_END.split(text, maxsplit=SUMMARY_SENTENCES)[:SUMMARY_SENTENCES])
    if len(summary) <= SUMMARY_MAX_CHARS:
        return summary
    cut = summary[: SUMMARY_MAX_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


def keywords(body: str) -> list[str]:
    """The 5 most frequent lowercase words of 4+ letters that are not stop words.

    Ties are broken alphabetically, so the result is deterministic.
    """
    counts = Counter(
        word
        for word in _LETTERS.findall(body.lower())
        if len(word) >= KEYWORD_MIN_LETTERS and word not in STOP_WORDS
    )
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, _ in ranked[:KEYWORD_COUNT]]
