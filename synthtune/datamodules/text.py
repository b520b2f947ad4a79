"""Rows of real examples → text through a template → token ids, for fit; sample ids for predict.

Every predict item also carries its provenance (``batch["provenance"]``, one dict per item, which the JSONL writer
adds to the sample's row): ``context_row``, the 0-based row number in the data of the example it was generated
from, and the ``carry_fields`` the user names (``[label]``), copied from that row.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.components.padding import right_pad
from synthtune.contract import SAMPLE_FIELDS, TextData
from synthtune.datamodules.base import ListDataset, SynthtuneDataModule
from synthtune.errors import SynthtuneError
from synthtune.records import read_records, require_fields
from synthtune.templates import Template, fill_template
from synthtune.registry import datamodule

log = logging.getLogger(__name__)


def render(rows: list[dict[str, Any]], template: str, source: str) -> list[str]:
    """Fill ``template`` with each row (numbers and booleans as text); a field the rows lack, or one that holds
    no text, is a one-line error."""
    return fill_template(template, rows, source)


class _PredictDataset(Dataset):
    def __init__(self, ids: list[int], contexts: list[int], provenance: list[dict[str, Any]]) -> None:
        self.ids = ids
        self.contexts = contexts
        self.provenance = provenance

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample_id = self.ids[i]
        # Generation cycles over the context order (round-robin over the training examples by default).
        context = self.contexts[sample_id % len(self.contexts)]
        return {"id": sample_id, "context_index": context, "provenance": self.provenance[context]}


def read_context_indices(path: str, num_contexts: int) -> list[int]:
    """A JSON list of training-example indices (the contexts to generate from, in order), checked against
    ``num_contexts``; one-line errors for a missing, malformed or out-of-range file."""
    try:
        order = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SynthtuneError(f"cannot read context_indices {path} ({type(exc).__name__}); give a JSON list of "
                             "training-example indices, or drop --data.init_args.context_indices") from None
    if not isinstance(order, list) or not order or not all(isinstance(i, int) and 0 <= i < num_contexts
                                                            for i in order):
        raise SynthtuneError(f"context_indices {path} must be a non-empty JSON list of integers in "
                             f"[0, {num_contexts}) (the training examples); regenerate it for this data")
    return order


def collate_ints(items: list[dict[str, int]]) -> dict[str, torch.Tensor]:
    """Stack dicts of ints into dicts of 1-D tensors."""
    return {key: torch.tensor([item[key] for item in items]) for key in items[0]}


def collate_predict(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Ids and context indices as tensors, each item's provenance as a list of dicts."""
    batch: dict[str, Any] = collate_ints([{k: v for k, v in item.items() if k != "provenance"} for item in items])
    batch["provenance"] = [item["provenance"] for item in items]
    return batch


@datamodule
class TextDataModule(SynthtuneDataModule):
    """Real examples for SoftSRV-style reconstruction training and round-robin generation.

    Args:
        path: a ``.jsonl``/``.csv``/``.parquet`` file, or a Hugging Face dataset name (online only).
        text_template: how a row becomes text, e.g. ``"{question}"`` or ``"{passage}\\n{question}"``.
        backbone: the model whose tokenizer is used (linked to ``model.backbone`` by the CLI).
        max_length: examples longer than this many tokens (EOS included) are truncated, with one
            warning giving the count.
        val_fraction: share of examples held out for validation (seeded split); 0 disables validation.
        batch_size: examples per training batch, and samples per generation batch unless
            ``predict_batch_size`` is set.
        predict_batch_size: samples per generation batch (``None``: ``batch_size``). The sampler decodes a
            batch's rows together and refills a finished row's slot with the next row, so a generation
            batch well above the training batch keeps the slots full; texts do not depend on it.
        num_samples: how many synthetic samples ``predict`` writes (ids 0..num_samples-1).
        limit: use at most this many examples (a seeded random subset); ``None`` uses all.
        split: split name, for Hugging Face datasets.
        hf_config: configuration name, for Hugging Face datasets.
        seed: seed of the train/val split, the subset and the shuffling.
        num_workers: DataLoader worker processes.
        strict: fail on broken lines of a JSONL file instead of skipping them with a warning.
        context_indices: a JSON list of training-example indices: sample ``i`` is generated from context
            ``list[i % len(list)]`` (e.g. a GP max-variance order written by the pipeline's ``contexts``
            stage); ``None`` cycles round-robin over the training examples.
        carry_fields: columns of the data copied into every sample from the row it was generated from
            (``[label]``: a per-label SoftSRV set); each sample also has ``context_row``, that row's 0-based number
            in the data. A column may not take the name of a field samples already have (``text``, ``id``, ...).
    """

    def __init__(
        self,
        path: str,
        text_template: Template = "{text}",
        backbone: str = DEFAULT_BACKBONE,
        max_length: int = 256,
        val_fraction: float = 0.0,
        batch_size: int = 8,
        num_samples: int = 100,
        limit: int | None = None,
        split: str = "train",
        hf_config: str | None = None,
        seed: int = 0,
        num_workers: int = 0,
        strict: bool = False,
        context_indices: str | None = None,
        predict_batch_size: int | None = None,
        carry_fields: list[str] | None = None,
    ) -> None:
        super().__init__()
        clash = sorted(set(carry_fields or ()) & set(SAMPLE_FIELDS))
        if clash:
            raise SynthtuneError(f"carry_fields {clash} would overwrite the samples' own field(s) of that name; "
                                 f"rename the column in the data, or leave it out of carry_fields")
        if max_length < 2:
            raise SynthtuneError(f"max_length must be at least 2 tokens, got {max_length}")
        if not 0.0 <= val_fraction < 1.0:
            raise SynthtuneError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if batch_size < 1 or num_samples < 0 or (predict_batch_size is not None and predict_batch_size < 1):
            raise SynthtuneError("batch_size and predict_batch_size must be ≥ 1 and num_samples ≥ 0")
        self.path, self.text_template, self.backbone = path, text_template, backbone
        self.max_length, self.val_fraction, self.batch_size = max_length, val_fraction, batch_size
        self.num_samples, self.limit, self.split, self.hf_config = num_samples, limit, split, hf_config
        self.seed, self.num_workers, self.strict = seed, num_workers, strict
        self.context_indices = context_indices
        self.carry_fields = list(carry_fields or ())
        self.predict_batch_size = predict_batch_size or batch_size
        self.train_texts: list[str] = []
        self.val_texts: list[str] = []
        self._train_ids: list[list[int]] = []
        self._val_ids: list[list[int]] = []
        self.train_provenance: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ data

    def load_examples(self) -> tuple[list[str], list[dict[str, Any]]]:
        """All example texts after the template, the empty-text filter and ``limit``, and each one's provenance
        (``context_row``, its row number in the data, and the ``carry_fields`` of that row)."""
        rows = read_records(self.path, split=self.split, hf_config=self.hf_config, strict=self.strict)
        texts = [t for t in render(rows, self.text_template, str(self.path))]
        kept = [i for i, t in enumerate(texts) if t.strip()]
        if len(kept) < len(texts):
            log.warning("%s: dropped %d example(s) whose text is empty", self.path, len(texts) - len(kept))
        if self.limit is not None and len(kept) > self.limit:
            order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(self.seed)).tolist()
            kept = [kept[i] for i in sorted(order[: self.limit])]
        if not kept:
            raise SynthtuneError(
                f"{self.path}: no examples left after filtering (empty file, empty texts or limit=0); "
                f"check the data and --data.text_template"
            )
        if self.carry_fields:
            require_fields([rows[i] for i in kept], self.carry_fields, f"{self.path} (carry_fields)")
        return [texts[i] for i in kept], [{"context_row": i, **{f: rows[i][f] for f in self.carry_fields}}
                                           for i in kept]

    def load_texts(self) -> list[str]:
        """All example texts after the template, the empty-text filter and ``limit``."""
        return self.load_examples()[0]

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids with EOS appended (so the model learns where an example ends), truncated."""
        tok = self.tokenizer
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        keep = self.max_length - 1
        truncated = sum(len(x) > keep for x in ids)
        if truncated:
            log.warning("%d of %d examples are longer than max_length=%d tokens and were truncated",
                        truncated, len(ids), self.max_length)
        return [x[:keep] + [tok.eos_token_id] for x in ids]

    def setup(self, stage: str | None = None) -> None:
        if self.train_texts:
            return
        texts, provenance = self.load_examples()
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(self.seed)).tolist()
        n_val = int(round(len(texts) * self.val_fraction)) if len(texts) > 1 else 0
        val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])
        self.train_texts = [texts[i] for i in train_idx]
        self.train_provenance = [provenance[i] for i in train_idx]
        self.val_texts = [texts[i] for i in val_idx]
        self._train_ids = self.tokenize(self.train_texts)
        self._val_ids = self.tokenize(self.val_texts) if self.val_texts else []

    def describe(self) -> TextData:
        return TextData(source=str(self.path), train_texts=tuple(self.train_texts), val_texts=tuple(self.val_texts),
                        max_length=self.max_length)

    # --------------------------------------------------------------- batches
    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, mask = right_pad([item["input_ids"] for item in items], self.tokenizer.pad_token_id)
        index = torch.tensor([item["index"] for item in items])
        return {"input_ids": ids, "attention_mask": mask, "index": index}

    @staticmethod
    def _examples(token_ids: list[list[int]]) -> ListDataset:
        """Each example's tokens and its ``index`` (the row of its context vector E(x))."""
        return ListDataset([{"input_ids": ids, "index": i} for i, ids in enumerate(token_ids)])

    def train_dataloader(self) -> DataLoader:
        dataset = self._examples(self._train_ids)
        return self.resumable_loader(dataset, self.batch_size, self.collate, self.seed, self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if not self._val_ids:
            return []
        dataset = self._examples(self._val_ids)
        return DataLoader(dataset, batch_size=self.batch_size, collate_fn=self.collate,
                          num_workers=self.num_workers)


    # ------------------------------------------------------------ generation

    def predict_dataloader(self) -> DataLoader:
        pending = [i for i in range(self.num_samples) if i not in self._skip]
        n = len(self.train_texts)
        contexts = read_context_indices(self.context_indices, n) if self.context_indices else list(range(n))
        dataset = _PredictDataset(pending, contexts, self.train_provenance)
        return DataLoader(dataset, batch_size=self.predict_batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate_predict)
