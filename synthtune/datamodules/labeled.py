"""Labelled few-shot examples for label-conditioned generator tuning (DawGen), and per-label predict ids.

fit:     the k-shot split of a task (``data/<task>/kshot/<k>-<seed>/train.jsonl``, or an explicit
         file; a task without k-shot splits gets k examples per label sampled by seed from its
         ``train.jsonl``), validated against the task's ``label_names``; batches carry the target
         tokens (``text``, or ``text_b`` of a pair task), the context tokens (``text_a``) and the label.
predict: ``num_per_label`` samples per label; sample id ``i`` is for label ``i // num_per_label``.
         Pair tasks draw ``text_a`` from the real first sentences (a seeded order, round-robin) and
         the generator writes ``text_b`` for the label and that ``text_a``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.components.padding import right_pad
from synthtune.contract import LabeledData
from synthtune.datamodules.base import ListDataset, SynthtuneDataModule
from synthtune.errors import SynthtuneError
from synthtune.tasks import TaskSpec, check_label_coverage, load_task, read_labeled
from synthtune.registry import datamodule

log = logging.getLogger(__name__)


def sample_kshot(rows: list[dict[str, Any]], num_labels: int, k: int, seed: int) -> list[dict[str, Any]]:
    """k rows per label drawn with ``seed`` (all of a label's rows when it has fewer), in file order."""
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in range(num_labels):
        idx = [i for i, r in enumerate(rows) if r["label"] == label]
        chosen += rng.sample(idx, min(k, len(idx)))
    return [rows[i] for i in sorted(chosen)]



@datamodule
class LabeledDataModule(SynthtuneDataModule):
    """A labelled task's few-shot examples for DawGen training and per-label generation ids.

    Args:
        task: task folder name under the data root (``sst2``, ``rte``, ...) or a folder with ``meta.json``; for
            rows of your own (``train_path``) any name, or ``None`` (the file's name).
        backbone: the model whose tokenizer is used (linked to ``model.backbone`` by the CLI).
        seed: the k-shot split seed (LM-BFF seeds 13, 21, 42, 87, 100), also the shuffle seed.
        k: examples per label of the split.
        train_path: explicit training file (JSONL, CSV, Parquet, ...) instead of the k-shot split, used whole.
        label_names: the label names in index order (override the task's); ``None`` with no task folder reads
            them from ``train_path`` (its distinct labels, names sorted).
        text_field: the column holding each row's text (single-sentence tasks).
        label_field: the column holding each row's label (a label name or its index).
        max_length: target tokens per example (EOS included); longer targets are truncated.
        max_context_length: ``text_a`` tokens kept for pair tasks.
        pair_separator: text placed between ``text_a`` and ``text_b``.
        batch_size: examples per training batch (and per generation batch unless ``predict_batch_size`` is set).
        num_per_label: samples per label that ``predict`` writes.
        predict_batch_size: samples per generation batch (``None``: ``batch_size``). Generation wants far larger
            batches than training: the sampler keeps that many rows decoding at once, refilling a slot as its
            sample ends, so a sample's text does not depend on it.
        num_workers: DataLoader worker processes.
        strict: fail on broken lines of a JSONL file instead of skipping them with a warning.
    """

    def __init__(
        self,
        task: str | None = None,
        backbone: str = DEFAULT_BACKBONE,
        seed: int = 42,
        k: int = 16,
        train_path: str | None = None,
        label_names: list[str] | None = None,
        text_field: str = "text",
        label_field: str = "label",
        max_length: int = 64,
        max_context_length: int = 64,
        pair_separator: str = "\n",
        batch_size: int = 8,
        num_per_label: int = 10,
        predict_batch_size: int | None = None,
        num_workers: int = 0,
        strict: bool = False,
    ) -> None:
        super().__init__()
        if max_length < 2 or max_context_length < 1:
            raise SynthtuneError(f"need max_length ≥ 2 and max_context_length ≥ 1, got {max_length} and "
                                 f"{max_context_length}; raise them")
        if batch_size < 1 or num_per_label < 0 or k < 1 or (predict_batch_size is not None and predict_batch_size < 1):
            raise SynthtuneError(f"need batch_size ≥ 1, predict_batch_size ≥ 1, k ≥ 1 and num_per_label ≥ 0 (got "
                                 f"{batch_size}, {predict_batch_size}, {k}, {num_per_label}); fix --data.init_args")
        if task is None and train_path is None:
            raise SynthtuneError("LabeledDataModule needs a task folder (--data.init_args.task) or the labelled rows "
                                 "(--data.init_args.train_path)")
        self.task_name, self.backbone, self.seed, self.k = task, backbone, seed, k
        self.text_field, self.label_field = text_field, label_field
        self.train_path, self.label_names_override = train_path, label_names
        self.max_length, self.max_context_length, self.pair_separator = max_length, max_context_length, pair_separator
        self.batch_size, self.num_per_label, self.num_workers = batch_size, num_per_label, num_workers
        self.predict_batch_size, self.strict = predict_batch_size or batch_size, strict
        self.task: TaskSpec | None = None
        self.rows: list[dict[str, Any]] = []
        self._items: list[dict[str, Any]] = []
        self._first_sentences: list[str] = []

    # ------------------------------------------------------------------ data

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.load_task().label_names

    @property
    def is_pair(self) -> bool:
        return self.load_task().is_pair

    def load_task(self) -> TaskSpec:
        if self.task is None:
            self.task = load_task(self.task_name, self.label_names_override, text_field=self.text_field,
                                  label_field=self.label_field, data=self.train_path, strict=self.strict)
        return self.task

    def load_rows(self) -> list[dict[str, Any]]:
        """The validated training rows (every label present), from ``train_path``, the k-shot split, or sampled."""
        task = self.load_task()
        if self.train_path:
            path, sampled = Path(self.train_path), False
        else:
            path, sampled = task.kshot_path(self.seed, "train", self.k), False
            if not path.is_file():
                full = task.folder / "train.jsonl"
                if not full.is_file():
                    raise SynthtuneError(f"task {task.name!r} has neither {path} nor {full}; pass --data.init_args.train_path")
                log.info("%s has no k-shot split; sampling %d examples per label with seed %d from %s",
                         task.name, self.k, self.seed, full)
                path, sampled = full, True
        if not path.exists() and path.suffix:  # a folder (save_to_disk) or a datasets name goes to the reader
            raise SynthtuneError(f"training file not found: {path}; check --data.init_args.train_path")
        rows = read_labeled(path, task, strict=self.strict)
        if sampled:
            rows = sample_kshot(rows, task.num_labels, self.k, self.seed)
        check_label_coverage(rows, task, str(path))
        return rows

    def encode_target(self, text: str) -> list[int]:
        """Target token ids with EOS appended (the generator learns where an example ends), truncated."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.max_length - 1]
        return ids + [self.tokenizer.eos_token_id]

    def encode_context(self, text_a: str) -> list[int]:
        """``text_a`` tokens (truncated) followed by the separator's tokens."""
        tok = self.tokenizer
        ids = tok(text_a, add_special_tokens=False)["input_ids"][: self.max_context_length]
        return ids + (tok(self.pair_separator, add_special_tokens=False)["input_ids"] if self.pair_separator else [])

    def setup(self, stage: str | None = None) -> None:
        if self.rows:
            return
        self.rows = self.load_rows()
        pair = self.is_pair
        self._items = [
            {"target": self.encode_target(r["text_b"] if pair else r["text"]),
             "context": self.encode_context(r["text_a"]) if pair else [], "label": r["label"], "index": i}
            for i, r in enumerate(self.rows)
        ]
        if pair:
            unique = list(dict.fromkeys(r["text_a"] for r in self.rows))
            random.Random(self.seed).shuffle(unique)
            self._first_sentences = unique

    def describe(self) -> LabeledData:
        task = self.load_task()
        return LabeledData(source=task.name, label_names=tuple(task.label_names), text_fields=tuple(task.text_fields),
                        first_sentences=tuple(self._first_sentences),
                        first_sentence_ids=tuple(tuple(self.encode_context(a)) for a in self._first_sentences),
                        max_length=self.max_length, max_context_length=self.max_context_length)

    # --------------------------------------------------------------- batches
    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = self.tokenizer.pad_token_id
        target_ids, target_mask = right_pad([it["target"] for it in items], pad)
        context_ids, context_mask = right_pad([it["context"] for it in items], pad)
        return {"target_ids": target_ids, "target_mask": target_mask, "context_ids": context_ids,
                "context_mask": context_mask, "label": torch.tensor([it["label"] for it in items]),
                "index": torch.tensor([it["index"] for it in items])}

    def train_dataloader(self) -> DataLoader:
        dataset = ListDataset(self._items)
        return self.resumable_loader(dataset, self.batch_size, self.collate, self.seed, self.num_workers)


    # ------------------------------------------------------------ generation

    def predict_item(self, sample_id: int) -> dict[str, Any]:
        """What sample ``sample_id`` is conditioned on: its label and, for pair tasks, its ``text_a``."""
        label = sample_id // self.num_per_label
        item: dict[str, Any] = {"id": sample_id, "label": label, "label_name": self.label_names[label]}
        if self.is_pair:
            text_a = self._first_sentences[sample_id % len(self._first_sentences)]
            item.update(text_a=text_a, context=self.encode_context(text_a))
        return item

    def predict_collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"id": torch.tensor([it["id"] for it in items]),
                                 "label": torch.tensor([it["label"] for it in items]),
                                 "label_name": [it["label_name"] for it in items]}
        if "text_a" in items[0]:
            batch["context_ids"], batch["context_mask"] = right_pad([it["context"] for it in items],
                                                                    self.tokenizer.pad_token_id)
            batch["text_a"] = [it["text_a"] for it in items]
        return batch

    def predict_dataloader(self) -> DataLoader:
        self.setup("predict")
        total = self.num_per_label * len(self.label_names)
        pending = [self.predict_item(i) for i in range(total) if i not in self._skip]
        return DataLoader(ListDataset(pending), batch_size=self.predict_batch_size, shuffle=False,
                          num_workers=self.num_workers, collate_fn=self.predict_collate)
