"""Exact deduplication after case and whitespace normalisation (SoftSRV App. A.2)."""

from __future__ import annotations

from typing import Iterable

from synthtune.curation.normalize import normalize_for_dedup


def dedup_indices(texts: Iterable[str]) -> list[int]:
    """Indices of the first occurrence of every distinct normalised text, in input order.

    Args:
        texts: the texts to deduplicate; two texts are duplicates when they are equal after
            :func:`~synthtune.curation.normalize.normalize_for_dedup` (case and whitespace).
    """
    seen: set[str] = set()
    keep: list[int] = []
    for index, text in enumerate(texts):
        key = normalize_for_dedup(text)
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return keep


def dedup_exact(texts: list[str]) -> list[str]:
    """``texts`` without exact duplicates (first occurrence kept, order preserved)."""
    return [texts[i] for i in dedup_indices(texts)]
