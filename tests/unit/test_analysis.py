"""The article processing rules of the task contract: pure logic, no servers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from articles_client.errors import ArticleRejected
from db.queries import Claimed
from tasks.analysis import analyse, keywords, reading_time_seconds, summarise
from tasks.jobs import decide

pytestmark = pytest.mark.unit


def test_word_count_counts_whitespace_separated_tokens() -> None:
    assert analyse("one  two\tthree\nfour\r\n five, six!").word_count == 6


def test_word_count_of_punctuation_only_tokens() -> None:
    assert analyse("— ... !!").word_count == 3


@pytest.mark.parametrize(
    ("words", "seconds"),
    [(0, 0), (1, 1), (3, 1), (4, 2), (199, 60), (200, 60), (201, 61), (1000, 300)],
)
def test_reading_time_is_rounded_up_to_the_second(words: int, seconds: int) -> None:
    # ceil(words / 200 words per minute), in seconds: 1 word takes 0.3 s, which rounds to 1.
    assert reading_time_seconds(words) == seconds


def test_analyse_uses_the_same_reading_time() -> None:
    assert analyse(" ".join(["word"] * 201)).reading_time_seconds == 61


def test_summary_is_the_first_two_sentences() -> None:
    body = "First sentence here. Second one!  Third? Fourth."
    assert summarise(body) == "First sentence here. Second one!"


def test_summary_of_a_single_sentence_is_the_whole_text() -> None:
    assert summarise("No full stop at all") == "No full stop at all"


def test_summary_folds_whitespace() -> None:
    assert summarise("One\n\n  two.\tThree\nfour. Five.") == "One two. Three four."


def test_long_summary_is_cut_at_a_word_boundary_within_280_chars() -> None:
    first = " ".join(f"word{i:03d}" for i in range(60)) + "."
    body = f"{first} Second sentence."
    summary = summarise(body)
    assert len(summary) <= 280
    assert summary.endswith("…")
    kept = summary.removesuffix("…")
    assert first.startswith(kept)
    assert first[len(kept)] == " "  # the cut falls between words, not inside one


def test_summary_of_exactly_280_chars_is_kept_whole() -> None:
    two = "a" * 200 + ". " + "b" * 77 + "."
    assert len(two) == 280
    assert summarise(two + " Third sentence.") == two
    longer = summarise("a" * 200 + ". " + "b" * 78 + ".")
    assert len(longer) <= 280
    assert longer.endswith("…")


def test_keywords_are_the_five_most_frequent_long_non_stop_words() -> None:
    body = (
        "Python python PYTHON workers workers queue queue queue queue "
        "redis redis broker broker celery cat cat cat cat cat "
        "that that that that with with with with"
    )
    # "cat" is too short; "that" and "with" are stop words; case is folded.
    assert keywords(body) == ["queue", "python", "broker", "redis", "workers"]


def test_keyword_ties_are_broken_alphabetically() -> None:
    assert keywords("zeta delta alpha gamma beta omega") == [
        "alpha",
        "beta",
        "delta",
        "gamma",
        "omega",
    ]


def test_keywords_split_on_punctuation_and_digits() -> None:
    assert keywords("state-of-the-art, data2025models; STATE!") == ["state", "data", "models"]


def test_keywords_may_be_fewer_than_five() -> None:
    assert keywords("a an the of it is") == []


@pytest.mark.parametrize("body", ["", " ", "\n\t  \r\n"])
def test_empty_body_is_rejected(body: str) -> None:
    with pytest.raises(ArticleRejected, match="body is empty"):
        analyse(body)


def test_decide_marks_an_empty_article_failed_with_the_reason() -> None:
    outcome = decide(Claimed(id=7, body="   ", attempts=1))
    assert (outcome.id, outcome.status, outcome.error) == (7, "failed", "body is empty")
    assert outcome.word_count is None


def test_decide_marks_a_good_article_done_with_its_fields() -> None:
    outcome = decide(Claimed(id=3, body="Short article. About queues and queues.", attempts=1))
    assert outcome.status == "done"
    assert outcome.word_count == 6
    assert outcome.reading_time_seconds == 2
    assert outcome.summary == "Short article. About queues and queues."
    assert outcome.keywords == ["queues", "article", "short"]
    assert outcome.error is None


@given(st.text(min_size=1).filter(lambda s: s.strip()))
def test_analysis_invariants_hold_for_any_text(body: str) -> None:
    result = analyse(body)
    assert result.word_count == len(body.split())
    assert len(result.summary) <= 280
    assert len(result.keywords) <= 5
    assert len(set(result.keywords)) == len(result.keywords)
    assert all(len(word) >= 4 and word == word.lower() for word in result.keywords)
