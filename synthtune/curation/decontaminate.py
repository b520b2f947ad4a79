"""N-gram decontamination against a reference (test) set (SoftSRV App. A.3).

An example is contaminated when it shares at least one word n-gram (n = 13 by default) with any
reference text, after both sides are lowercased and stripped of punctuation and digits. The
reference n-grams are kept as a Python set of word tuples, so matching is exact (no hash
collisions) and each candidate n-gram costs one set lookup; a text stops being scanned at its
first hit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from synthtune.curation.normalize import ngram_tokens
from synthtune.errors import SynthtuneError

log = logging.getLogger(__name__)

DEFAULT_NGRAM = 13


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise SynthtuneError(f"n-gram size must be a positive integer, got {n!r}; pass e.g. --ngram 13")


def reference_ngrams(references: Iterable[str], n: int = DEFAULT_NGRAM) -> set[tuple[str, ...]]:
    """The set of word n-grams of ``references`` (normalised as in App. A.3).

    Args:
        references: the reference (test-set) texts.
        n: the n-gram length in words.

    A reference with fewer than ``n`` words contributes no n-gram: no ``n``-word window of a
    candidate could equal it.
    """
    _check_n(n)
    grams: set[tuple[str, ...]] = set()
    count = 0
    for text in references:
        count += 1
        tokens = ngram_tokens(text)
        for i in range(len(tokens) - n + 1):
            grams.add(tuple(tokens[i : i + n]))
    if count == 0:
        raise SynthtuneError("the decontamination reference set is empty; pass a reference file with rows")
    return grams


def is_contaminated(text: str, grams: set[tuple[str, ...]], n: int = DEFAULT_NGRAM) -> bool:
    """Whether ``text`` shares a word ``n``-gram with ``grams`` (from :func:`reference_ngrams`)."""
    tokens = ngram_tokens(text)
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i : i + n]) in grams:
            return True
    return False


@dataclass
class DecontaminationResult:
    """Which texts survived decontamination.

    Args:
        kept: indices of the clean texts, in input order.
        dropped: indices of the contaminated texts, in input order.
        n: the n-gram length used.
        num_reference_ngrams: the number of distinct reference n-grams.
    """

    kept: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    n: int = DEFAULT_NGRAM
    num_reference_ngrams: int = 0

    @property
    def total(self) -> int:
        return len(self.kept) + len(self.dropped)

    @property
    def contamination_rate(self) -> float:
        """Fraction of the input texts that were dropped (0.0 for no input)."""
        return len(self.dropped) / self.total if self.total else 0.0


def decontaminate(texts: Sequence[str], references: Iterable[str], n: int = DEFAULT_NGRAM) -> DecontaminationResult:
    """Split ``texts`` into clean and contaminated ones by word ``n``-gram overlap with ``references``.

    Args:
        texts: candidate (synthetic) texts.
        references: reference (test-set) texts; an empty set raises :class:`SynthtuneError`.
        n: the n-gram length in words (13 in the paper).
    """
    grams = reference_ngrams(references, n)
    result = DecontaminationResult(n=n, num_reference_ngrams=len(grams))
    if not grams:
        log.warning("every reference text is shorter than %d words after normalisation; nothing can match", n)
        result.kept = list(range(len(texts)))
        return result
    for index, text in enumerate(texts):
        (result.dropped if is_contaminated(text, grams, n) else result.kept).append(index)
    return result
