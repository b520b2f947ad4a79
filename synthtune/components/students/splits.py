"""The real rows of one point of a data-efficiency curve: k per label for training, k per label for dev."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the task is read through its own methods: components import nothing of the data vocabulary
    from synthtune.tasks import TaskSpec


def _per_label(rows: list[dict[str, Any]], num_labels: int, k: int, rng: random.Random,
               exclude: set[int] = frozenset()) -> list[int]:
    chosen: list[int] = []
    for label in range(num_labels):
        idx = [i for i, r in enumerate(rows) if r["label"] == label and i not in exclude]
        chosen += rng.sample(idx, min(k, len(idx)))
    return sorted(chosen)


def curve_split(task: "TaskSpec", k: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """``(train, dev, source)``: k rows per label of each, stratified and drawn with ``seed``.

    k ≤ 16 with an LM-BFF split for ``seed`` (``kshot/16-<seed>``): the first k rows per label of a seeded
    order of that split's train and dev files, so every k of a seed is a subset of the next; otherwise 2k
    rows per label from the task's ``train.jsonl`` with ``seed``, the first k train and the other k dev.
    """
    rng = random.Random(seed)
    lmbff = task.kshot_path(seed, "train", 16)
    if k <= 16 and lmbff.is_file():
        splits = []
        for split in ("train", "dev"):
            rows = task.read_labeled(task.kshot_path(seed, split, 16))
            rng.shuffle(rows)  # a seeded order; the first k of each label are the point's rows
            by_label: dict[int, list[dict[str, Any]]] = {}
            for row in rows:
                by_label.setdefault(row["label"], []).append(row)
            splits.append([r for label in sorted(by_label) for r in by_label[label][:k]])
        return splits[0], splits[1], f"LM-BFF {lmbff.parent.name}"
    rows = task.read_labeled(task.folder / "train.jsonl")
    train_idx = _per_label(rows, task.num_labels, k, rng)
    dev_idx = _per_label(rows, task.num_labels, k, rng, exclude=set(train_idx))
    return [rows[i] for i in train_idx], [rows[i] for i in dev_idx], "train.jsonl"


def matched_random_subset(rows: list[dict[str, Any]], like: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """A seeded random subset of ``rows`` with exactly the per-label counts of ``like`` (in file order): the
    control of a filtered or resampled set, which then differs from it only in which rows were chosen."""
    rng = random.Random(seed)
    chosen: list[int] = []
    for label, count in sorted(Counter(r["label"] for r in like).items()):
        idx = [i for i, r in enumerate(rows) if r["label"] == label]
        if count > len(idx):
            raise ValueError(f"label {label}: {count} rows asked for, {len(idx)} available")
        chosen += rng.sample(idx, count)
    return [rows[i] for i in sorted(chosen)]
