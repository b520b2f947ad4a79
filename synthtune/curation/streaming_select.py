"""Round-robin cluster selection over streamed labels with bounded reservoirs (SoftSRV App. A.2).

:func:`~synthtune.curation.cluster_select.round_robin_select` holds every cluster's members as
Python lists. This module draws the very same selection (same seed, same labels, same chosen
rows in the same order) while holding only the part of each cluster that can be picked:

* the pick can run for at most ``R`` rounds, the smallest ``r`` with ``sum_c min(n_c, r) >= target``
  (each round takes one member of every non-exhausted cluster), so no cluster gives more than
  ``min(n_c, R)`` members, and all of them together hold fewer than ``target + clusters``;
* ``round_robin_select`` shuffles each cluster's members (in input order) with the seeded
  generator and pops from the end; the same draws permute the *ranks* ``0..n_c-1``, and only the
  last ``min(n_c, R)`` ranks of each permutation are kept (the cluster's reservoir);
* the rounds replay the generator's cluster orders exactly; a second pass over the labels turns
  each picked (cluster, rank) into the row's position.

The labels come as an iterable of chunks, read twice, so the input never has to be in memory.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np


def cluster_counts(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """Members per cluster label over all ``chunks`` (index = label)."""
    counts = np.zeros(0, dtype=np.int64)
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        part = np.bincount(np.asarray(chunk, dtype=np.int64))
        if len(part) > len(counts):
            part[: len(counts)] += counts
            counts = part
        else:
            counts[: len(part)] += part
    return counts


def rounds_needed(counts: np.ndarray, target: int) -> int:
    """The round in which round-robin reaches ``target`` picks: the smallest ``r`` with
    ``sum_c min(n_c, r) >= target``.

    Args:
        counts: members per cluster.
        target: picks wanted (at most ``counts.sum()``).
    """
    if target <= 0:
        return 0
    low, high = 1, int(counts.max())
    while low < high:  # binary search on the monotone sum_c min(n_c, r)
        middle = (low + high) // 2
        if int(np.minimum(counts, middle).sum()) >= target:
            high = middle
        else:
            low = middle + 1
    return low


def _within_chunk_rank(labels: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions of the chunk have the same label."""
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(ordered)]))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - run_start
    return rank


def round_robin_streaming(chunks: Callable[[], Iterable[np.ndarray]], num_samples: int, seed: int = 0) -> list[int]:
    """Positions chosen one per cluster per round, equal to ``round_robin_select(labels, num_samples, seed)``.

    Args:
        chunks: a function returning a fresh iterable over the labels in order, in chunks; it is
            called twice (counts, then positions).
        num_samples: how many to choose; capped at the number of labels.
        seed: seed of the random orders.

    Returns:
        The chosen positions (into the concatenated labels) in the order they were chosen.
    """
    counts = cluster_counts(chunks())
    target = min(int(num_samples), int(counts.sum()))
    if target == 0:
        return []
    rounds = rounds_needed(counts, target)
    rng = np.random.default_rng(seed)
    clusters = [int(c) for c in np.flatnonzero(counts)]
    reservoir: dict[int, np.ndarray] = {}
    for cluster in clusters:
        size = int(counts[cluster])
        # the draws round_robin_select makes shuffling this cluster's members, applied to ranks
        permutation = rng.permutation(size)
        reservoir[cluster] = permutation[size - min(size, rounds):].copy()
        del permutation
    taken = dict.fromkeys(clusters, 0)
    picks: list[tuple[int, int]] = []
    active = clusters
    while len(picks) < target:
        for cluster in rng.permutation(active).tolist():
            tail = reservoir[cluster]
            picks.append((cluster, int(tail[len(tail) - 1 - taken[cluster]])))  # list.pop() from the end
            taken[cluster] += 1
            if len(picks) == target:
                break
        active = [c for c in active if taken[c] < counts[c]]
    # (cluster, rank within cluster) -> position, in one more pass over the labels
    codes = np.array([(c << 32) | r for c, r in picks], dtype=np.int64)
    order = np.argsort(codes)
    sorted_codes = codes[order]
    positions = np.full(target, -1, dtype=np.int64)
    seen = np.zeros(len(counts), dtype=np.int64)
    base = 0
    for chunk in chunks():
        chunk = np.asarray(chunk, dtype=np.int64)
        if len(chunk) == 0:
            continue
        rank = seen[chunk] + _within_chunk_rank(chunk)
        chunk_codes = (chunk << 32) | rank
        where = np.minimum(np.searchsorted(sorted_codes, chunk_codes), target - 1)
        hit = np.flatnonzero(sorted_codes[where] == chunk_codes)
        positions[order[where[hit]]] = base + hit
        seen += np.bincount(chunk, minlength=len(counts))
        base += len(chunk)
    return positions.tolist()
