"""Labelled classification tasks: label names, text fields and validated rows.

A task is a folder with a ``meta.json`` (``label_names``, ``fields``) and JSONL splits, as in the
shipped ``data/<task>/`` folders; ``kshot/16-<seed>/{train,dev}.jsonl`` are the LM-BFF 16-shot
splits. Rows use ``text`` (single-sentence tasks) or ``text_a``/``text_b`` (pair tasks) and a
``label`` that is an index into ``label_names`` (a label name is accepted too).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.errors import SynthtuneError
from synthtune.records import read_records

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


def data_root() -> Path:
    """``$SYNTHTUNE_DATA``, else ``./data`` when it exists, else the repository's ``data/``."""
    env = os.environ.get("SYNTHTUNE_DATA")
    if env:
        return Path(env)
    local = Path("data")
    return local if local.is_dir() else REPO_DATA


@dataclass(frozen=True)
class TaskSpec:
    """What a labelled task looks like.

    Args:
        name: task name (the data folder's name).
        label_names: label index → name.
        is_pair: rows have ``text_a``/``text_b`` (sentence-pair tasks) instead of ``text``.
        folder: where the task's files are.
    """

    name: str
    label_names: tuple[str, ...]
    is_pair: bool
    folder: Path

    @property
    def text_fields(self) -> tuple[str, ...]:
        return ("text_a", "text_b") if self.is_pair else ("text",)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def kshot_path(self, seed: int, split: str = "train", k: int = 16) -> Path:
        return self.folder / "kshot" / f"{k}-{seed}" / f"{split}.jsonl"

    def eval_path(self) -> Path:
        """The held-out split used as the test set (LM-BFF uses the official dev set as test)."""
        for name in ("test", "validation", "validation_matched"):
            path = self.folder / f"{name}.jsonl"
            if path.is_file():
                return path
        raise SynthtuneError(f"task {self.name!r} has no test or validation split in {self.folder}")

    def label_index(self, label: Any, source: str, row: int) -> int:
        """``label`` (an index or a label name) as an index, or a one-line error."""
        if isinstance(label, bool):
            label = int(label)
        if isinstance(label, str) and label in self.label_names:
            return self.label_names.index(label)
        try:
            index = int(label)
        except (TypeError, ValueError):
            index = -1
        if isinstance(label, float) and label != int(label):
            index = -1
        if not 0 <= index < self.num_labels:
            raise SynthtuneError(
                f"{source}: row {row} has label {label!r}, outside the label set {list(self.label_names)} "
                f"(indices 0..{self.num_labels - 1}); fix the label or the task's label_names"
            )
        return index


def load_task(name: str, label_names: list[str] | None = None, is_pair: bool | None = None) -> TaskSpec:
    """The task ``name`` (a folder under the data root, or a path to a folder with ``meta.json``);
    ``label_names``/``is_pair`` override or replace what ``meta.json`` says."""
    folder = Path(name) if Path(name).is_dir() else data_root() / name
    meta: dict[str, Any] = {}
    if (folder / "meta.json").is_file():
        meta = json.loads((folder / "meta.json").read_text())
    names = label_names or meta.get("label_names")
    if not names:
        raise SynthtuneError(f"task {name!r}: no label_names (no {folder / 'meta.json'}); pass label_names in the config")
    if is_pair is None:
        fields = " ".join(str(f) for f in meta.get("fields", []))
        is_pair = "text_b" in fields
    return TaskSpec(name=Path(name).name, label_names=tuple(names), is_pair=bool(is_pair), folder=folder)


def read_labeled(path: str | Path, task: TaskSpec, *, allow_empty: bool = False) -> list[dict[str, Any]]:
    """Rows of ``path`` as ``{"text"| "text_a","text_b", "label": int}``, validated against ``task``."""
    source = str(path)
    rows = read_records(path)
    out = []
    for i, row in enumerate(rows):
        if task.is_pair and not str(row.get("text_b", "") or "").strip():
            raise SynthtuneError(f"{source}: row {i} has no text_b, but {task.name} is a sentence-pair task; "
                                 f"give every row text_a and text_b")
        missing = [f for f in (*task.text_fields, "label") if f not in row]
        if missing:
            raise SynthtuneError(f"{source}: row {i} lacks field(s) {', '.join(missing)} "
                                 f"(it has {', '.join(sorted(row)) or 'no fields'}); {task.name} rows need "
                                 f"{', '.join((*task.text_fields, 'label'))}")
        item = {f: str(row[f]) for f in task.text_fields}
        item["label"] = task.label_index(row["label"], source, i)
        out.append(item)
    if not out and not allow_empty:
        raise SynthtuneError(f"{source}: no rows; check the file")
    return out


def check_label_coverage(rows: list[dict[str, Any]], task: TaskSpec, source: str) -> None:
    """One line naming the labels that have no example."""
    seen = {r["label"] for r in rows}
    empty = [task.label_names[i] for i in range(task.num_labels) if i not in seen]
    if empty:
        raise SynthtuneError(f"{source}: label(s) {', '.join(empty)} have zero examples; every label needs at least one")
