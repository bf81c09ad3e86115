"""Sample articles, generated locally (no network): varied topics, lengths and structure.

Lengths follow a long-tailed mix like a real news feed: many short items, some features, a few
long reads. Every generated article is valid, so processing it ends `done`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

TOPICS: Final = {
    "energy": ["grid", "solar", "battery", "turbine", "utility", "storage", "emissions"],
    "health": ["clinic", "vaccine", "patients", "research", "hospital", "nutrition", "trial"],
    "cities": ["transit", "housing", "council", "zoning", "bicycle", "budget", "district"],
    "science": ["telescope", "genome", "experiment", "particle", "climate", "ocean", "fossil"],
    "business": ["startup", "earnings", "merger", "supply", "retail", "investors", "market"],
    "sport": ["season", "coach", "stadium", "league", "training", "transfer", "final"],
}
SUBJECTS: Final = [
    "The regional council",
    "A team of researchers",
    "Local residents",
    "The company",
    "Independent analysts",
    "City officials",
    "Volunteers",
    "The national agency",
]
VERBS: Final = [
    "announced",
    "questioned",
    "published",
    "reviewed",
    "expanded",
    "delayed",
    "welcomed",
    "measured",
]
CONNECTORS: Final = [
    "after months of debate",
    "despite rising costs",
    "according to new figures",
    "for the first time this decade",
    "ahead of the winter",
    "following a public consultation",
]
TITLE_PATTERNS: Final = [
    "How {a} and {b} are changing {topic}",
    "{A} plans face new questions",
    "Inside the {a} debate",
    "What the latest {a} figures mean for {b}",
    "{A}: five things to know",
]
# (share of articles, min paragraphs, max paragraphs): briefs, news, features, long reads.
LENGTHS: Final = [(0.35, 1, 2), (0.4, 3, 6), (0.2, 8, 15), (0.05, 20, 40)]


@dataclass(frozen=True, slots=True)
class SampleArticle:
    title: str
    body: str
    source_url: str
    external_id: str


def generate(count: int, *, seed: int | None = None) -> Iterator[SampleArticle]:
    """Yield `count` sample articles; the same `seed` gives the same texts (not the same ids)."""
    rng = random.Random(seed)
    batch = uuid.uuid4().hex[:8]
    for index in range(count):
        topic = rng.choice(sorted(TOPICS))
        words = TOPICS[topic]
        title = _title(rng, topic, words)
        body = "\n\n".join(_paragraph(rng, words) for _ in range(_paragraph_count(rng)))
        slug = "-".join(title.lower().replace(":", "").split())[:60]
        yield SampleArticle(
            title=title,
            body=body,
            source_url=f"https://news.example.com/{topic}/{slug}",
            external_id=f"seed-{batch}-{index}",
        )


def _title(rng: random.Random, topic: str, words: list[str]) -> str:
    a, b = rng.sample(words, 2)
    pattern = rng.choice(TITLE_PATTERNS)
    return pattern.format(a=a, b=b, A=a.capitalize(), topic=topic)


def _paragraph_count(rng: random.Random) -> int:
    pick = rng.random()
    for share, low, high in LENGTHS:
        if pick < share:
            return rng.randint(low, high)
        pick -= share
    return LENGTHS[-1][1]


def _paragraph(rng: random.Random, words: list[str]) -> str:
    return " ".join(_sentence(rng, words) for _ in range(rng.randint(2, 6)))


def _sentence(rng: random.Random, words: list[str]) -> str:
    a, b = rng.sample(words, 2)
    subject, verb, connector = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(CONNECTORS)
    shape = rng.randrange(3)
    if shape == 0:
        return f"{subject} {verb} a report on {a} {connector}."
    if shape == 1:
        return f"{subject} {verb} the {a} plan, saying the {b} figures were {rng.randint(2, 97)}%."
    return f"Why does {a} matter for {b}? {subject} {verb} it {connector}."
