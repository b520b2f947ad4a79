"""Exact dedup (App. A.2) and 13-gram decontamination (App. A.3)."""

import pytest

from synthtune.curation.decontaminate import decontaminate, is_contaminated, reference_ngrams
from synthtune.curation.dedup import dedup_exact, dedup_indices
from synthtune.curation.normalize import ngram_tokens, normalize_for_dedup
from synthtune.errors import SynthtuneError

REFERENCE = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
REF_TOKENS = ngram_tokens(REFERENCE)


def test_dedup_normalises_case_and_whitespace_and_keeps_first():
    texts = ["Hello World", "hello   world ", "HELLO\tWORLD\n", "Hello, World", "other", "Other", "x"]
    assert dedup_indices(texts) == [0, 3, 4, 6]
    assert dedup_exact(texts) == ["Hello World", "Hello, World", "other", "x"]
    assert normalize_for_dedup("  A\n b  ") == "a b"


def test_ngram_tokens_strip_digits_punctuation_and_case():
    assert ngram_tokens("It's $12.50, Bob's 3rd-try!") == ["its", "bobs", "rd", "try"]
    assert ngram_tokens("Sold 48 clips; then 24.") == ["sold", "clips", "then"]
    assert ngram_tokens("Don't STOP") == ["dont", "stop"]
    assert ngram_tokens("a\u00e9b 1,000 c") == ["a\u00e9b", "c"]


def test_reference_has_enough_tokens():
    assert len(REF_TOKENS) >= 20


def _window(start: int, length: int) -> str:
    return " ".join(REF_TOKENS[start : start + length])


def test_thirteen_gram_overlap_dropped_twelve_gram_kept():
    exact13 = "Here is a story. " + _window(2, 13) + " and that is all."
    digits_punct = (
        "NATALIA sold clips to 72 of her friends in April; and then -- she sold 1/2 as many clips?? in May!!"
    )
    twelve = "zebra quartz " + _window(2, 12) + " quartz zebra"
    unrelated = "A train leaves the station at 3 pm travelling at 60 miles per hour toward the coast."
    short_prefix = _window(0, 13)
    texts = [exact13, digits_punct, twelve, unrelated, short_prefix]
    result = decontaminate(texts, [REFERENCE, "A completely different question about apples?"], n=13)
    assert result.dropped == [0, 1, 4]
    assert result.kept == [2, 3]
    assert result.contamination_rate == pytest.approx(3 / 5)
    # The same 12-gram counts at n = 12.
    assert decontaminate([twelve], [REFERENCE], n=12).dropped == [0]


def test_is_contaminated_matches_across_digit_changes():
    grams = reference_ngrams([REFERENCE], 13)
    changed = REFERENCE.replace("48", "1,234").replace("?", ".")
    assert is_contaminated(changed, grams, 13)
    assert not is_contaminated("nothing like it at all", grams, 13)


def test_empty_reference_set_raises():
    with pytest.raises(SynthtuneError, match="reference set is empty"):
        decontaminate(["some text"], [], n=13)


def test_short_references_match_nothing(caplog):
    result = decontaminate(["a b c"], ["a b c"], n=13)
    assert result.kept == [0] and result.contamination_rate == 0.0
    assert "shorter than 13 words" in caplog.text


def test_bad_n_raises():
    with pytest.raises(SynthtuneError, match="n-gram size"):
        decontaminate(["x"], ["y"], n=0)
