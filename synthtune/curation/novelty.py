"""Novelty of synthetic samples: how much of each one is copied from its own context or from the train split.

A contextual generator (SoftSRV's SS_MC, or a PT template) sees a training question x_i when it writes
sample i; a high MAUVE could then come from writing x_i back. Three measures, all on plain inputs:

* **n-gram overlap** (n = 13, the decontamination n-gram of SoftSRV App. A.3, with the same normalisation:
  lowercase, punctuation and digits removed): the share of a sample's word n-grams (counted by position) that
  occur in a reference, its own context question or any train question. A sample with fewer than n words has
  no n-grams; it counts as a copy only when it equals the reference after normalisation.
* **nearest-neighbour cosine**: the largest cosine similarity between a sample's features and any train
  question's (MiniLM sentence embeddings in ``synthtune score novelty``).
* **distinct rows**: samples that differ after lowercasing and collapsing whitespace (the dedup normalisation).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from synthtune.curation.decontaminate import DEFAULT_NGRAM, reference_ngrams
from synthtune.curation.normalize import ngram_tokens, normalize_for_dedup
from synthtune.errors import SynthtuneError

#: A sample copies a reference when more than this share of its n-grams occur in it.
DEFAULT_OVERLAP_THRESHOLD = 0.5
#: A sample's nearest train question counts as a near-duplicate at or above this cosine.
DEFAULT_NEAR_COSINE = 0.95


def ngram_overlap(text: str, grams: set[tuple[str, ...]], n: int = DEFAULT_NGRAM) -> Optional[float]:
    """The share of ``text``'s word ``n``-grams (by position) that are in ``grams``; ``None`` when ``text`` has
    fewer than ``n`` words.

    Args:
        text: one sample.
        grams: the reference n-grams (:func:`synthtune.curation.decontaminate.reference_ngrams`).
        n: the n-gram length in words.
    """
    tokens = ngram_tokens(text)
    windows = len(tokens) - n + 1
    if windows < 1:
        return None
    # overlap = |{i : tokens[i:i+n] ∈ grams}| / (len(tokens) - n + 1)
    return sum(tuple(tokens[i:i + n]) in grams for i in range(windows)) / windows


def copies(overlaps: Sequence[Optional[float]], exact: Sequence[bool], threshold: float) -> list[bool]:
    """Whether each sample copies its reference: overlap above ``threshold``, or (too short for one n-gram)
    equal to it after normalisation.

    Args:
        overlaps: :func:`ngram_overlap` of each sample (``None``: too short).
        exact: whether each sample equals its reference (or one of them) after n-gram normalisation.
        threshold: the overlap share above which a sample is a copy.
    """
    return [bool(e) if o is None else o > threshold for o, e in zip(overlaps, exact)]


def context_overlaps(texts: Sequence[str], contexts: Sequence[Optional[str]],
                     n: int = DEFAULT_NGRAM) -> tuple[list[Optional[float]], list[bool]]:
    """Each sample's n-gram overlap with its own context text (``None`` where it has no context or is too
    short), and whether it equals that context after normalisation.

    Args:
        texts: the samples.
        contexts: the context each sample was written from, aligned with ``texts`` (``None``: none).
        n: the n-gram length in words.
    """
    overlaps, exact = [], []
    for text, context in zip(texts, contexts):
        if context is None:
            overlaps.append(None)
            exact.append(False)
            continue
        overlaps.append(ngram_overlap(text, reference_ngrams([context], n), n))
        exact.append(ngram_tokens(text) == ngram_tokens(context))
    return overlaps, exact


def train_overlaps(texts: Sequence[str], train: Sequence[str],
                   n: int = DEFAULT_NGRAM) -> tuple[list[Optional[float]], list[bool]]:
    """Each sample's n-gram overlap with the union of the train texts' n-grams, and whether it equals a train
    text after normalisation.

    Args:
        texts: the samples.
        train: the train split's texts.
        n: the n-gram length in words.
    """
    grams = reference_ngrams(train, n)
    normalized = {" ".join(ngram_tokens(t)) for t in train}
    return ([ngram_overlap(t, grams, n) for t in texts], [" ".join(ngram_tokens(t)) in normalized for t in texts])


def nearest_cosine(features: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """The largest cosine similarity of each row of ``features`` to any row of ``reference``.

    Args:
        features: (N, d) sample features.
        reference: (M, d) reference (train) features.
        chunk: rows of ``features`` compared at a time (bounds memory to chunk × M).
    """
    if features.ndim != 2 or reference.ndim != 2 or features.shape[1] != reference.shape[1] or not len(reference):
        raise SynthtuneError(f"nearest_cosine needs (N, d) and non-empty (M, d) features, got {features.shape} "
                             f"and {reference.shape}")
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    p, q = unit(np.asarray(features, dtype=np.float64)), unit(np.asarray(reference, dtype=np.float64))
    # cos(p_i, q_j) = p_i·q_j / (|p_i| |q_j|); keep max_j
    return np.concatenate([(p[i:i + chunk] @ q.T).max(axis=1) for i in range(0, len(p), chunk)]) if len(p) else \
        np.zeros(0)


def distinct_rows(texts: Sequence[str]) -> int:
    """How many of ``texts`` differ after lowercasing and collapsing whitespace."""
    return len({normalize_for_dedup(t) for t in texts})


def _share(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if len(flags) else 0.0


def _overlap_summary(overlaps: Sequence[Optional[float]], exact: Sequence[bool], threshold: float,
                     total: int) -> dict[str, Any]:
    flags = copies(overlaps, exact, threshold)
    scored = [o for o in overlaps if o is not None]
    return {"copies": int(sum(flags)), "share": sum(flags) / total if total else 0.0,
            "any_overlap": int(sum(o > 0 for o in scored)), "mean_overlap": float(np.mean(scored)) if scored else None,
            "exact": int(sum(exact)), "scored": len(scored)}


def novelty_report(texts: Sequence[str], train: Sequence[str], contexts: Optional[Sequence[Optional[str]]] = None,
                   features: Optional[np.ndarray] = None, train_features: Optional[np.ndarray] = None,
                   n: int = DEFAULT_NGRAM, threshold: float = DEFAULT_OVERLAP_THRESHOLD,
                   near_cosine: float = DEFAULT_NEAR_COSINE) -> dict[str, Any]:
    """Every novelty measure of one sample set.

    ``context`` and ``train`` hold: ``copies`` (samples whose n-gram overlap exceeds ``threshold``, or, too
    short for one n-gram, equal the reference), ``share`` (copies / all samples), ``any_overlap`` (samples
    sharing at least one n-gram), ``mean_overlap`` (over the samples with n-grams), ``exact`` (equal after
    normalisation) and ``scored`` (samples with at least n words and, for ``context``, a context).
    ``nearest_train_cosine`` holds the mean, median and 90th percentile over samples and the share at or
    above ``near_cosine``.

    Args:
        texts: the samples.
        train: the train split's texts.
        contexts: each sample's own context text (``None`` for one without); ``None`` skips the context part.
        features: (N, d) sample features for the nearest-neighbour cosine; ``None`` skips it.
        train_features: (M, d) train features, with ``features``.
        n: the n-gram length in words.
        threshold: the overlap share above which a sample copies its reference.
        near_cosine: the cosine at or above which a sample's nearest train question counts as a near-duplicate.
    """
    if not texts:
        raise SynthtuneError("no samples to score for novelty; check the input file")
    if not 0.0 <= threshold < 1.0:
        raise SynthtuneError(f"--threshold must be in [0, 1), got {threshold}")
    if contexts is not None and len(contexts) != len(texts):
        raise SynthtuneError(f"{len(contexts)} contexts for {len(texts)} samples; give one per sample")
    total = len(texts)
    report: dict[str, Any] = {"num_samples": total, "distinct_rows": distinct_rows(texts), "ngram": n,
                              "threshold": threshold, "num_train": len(train)}
    report["train"] = _overlap_summary(*train_overlaps(texts, train, n), threshold, total)
    report["context"] = _overlap_summary(*context_overlaps(texts, contexts, n), threshold, total) \
        if contexts is not None else None
    if features is not None:
        if train_features is None:
            raise SynthtuneError("nearest-neighbour cosine needs the train features too")
        cos = nearest_cosine(features, train_features)
        report["nearest_train_cosine"] = {"mean": float(cos.mean()), "median": float(np.median(cos)),
                                          "p90": float(np.percentile(cos, 90)), "near": near_cosine,
                                          "share_near": _share(cos >= near_cosine)}
    else:
        report["nearest_train_cosine"] = None
    return report
