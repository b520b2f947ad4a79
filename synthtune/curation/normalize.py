"""Text normalisation used by deduplication and decontamination.

Two strengths:

* :func:`normalize_for_dedup` lowercases and collapses whitespace, so two examples that differ only
  in case or spacing count as the same example (SoftSRV App. A.2, exact deduplication).
* :func:`ngram_tokens` additionally strips punctuation and digits before splitting into words, so a
  test question copied with other numbers or punctuation still matches (SoftSRV App. A.3).
"""

from __future__ import annotations

import re

# Everything that is not a letter: punctuation, symbols, digits, underscore and whitespace.
_NOT_LETTER = re.compile(r"[\W\d_]+")
# Apostrophes inside words are dropped rather than split on, so "don't" and "dont" agree.
_APOSTROPHES = str.maketrans("", "", "'\u2019\u2018`")


def normalize_for_dedup(text: str) -> str:
    """``text`` lowercased with runs of whitespace collapsed to one space and the ends trimmed."""
    return " ".join(text.lower().split())


def normalize_for_ngrams(text: str) -> str:
    """``text`` lowercased with punctuation and digits removed and whitespace collapsed.

    Apostrophes are deleted; every other run of non-letters becomes a single space.
    """
    return _NOT_LETTER.sub(" ", text.lower().translate(_APOSTROPHES)).strip()


def ngram_tokens(text: str) -> list[str]:
    """The word tokens that n-gram matching compares: :func:`normalize_for_ngrams` split on spaces."""
    return normalize_for_ngrams(text).split()
