"""Predict-time items for template generation: request numbers (PT, PT_SR) or input questions (answers).

Ids are blocks: item ``i`` owns the output ids ``i * ids_per_item ... (i + 1) * ids_per_item - 1``.
A PT request asks for ``num_questions`` questions, so the generating module sets
``ids_per_item = num_questions`` and request ``r`` writes its j-th parsed question as id
``r * num_questions + j``; in answer mode ``ids_per_item = 1`` and the id is the question's row
number in the input file. On resume, an item counts as done once any id of its block is on disk (a
batch's rows are written together, and an item whose output was dropped as malformed wrote no id,
so it is simply generated again with the same seed).

PT requests are seeded like the paper's (App. A.2) and like SoftSRV's contexts: with training
examples (``train_path`` rows through ``text_template``), round-robin, request ``r`` using example
``r mod N``. The examples reach the model as ``PromptData.train_texts``; each batch says which one
each request uses (``example_index``).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.contract import PromptData
from synthtune.datamodules.base import SynthtuneDataModule
from synthtune.datamodules.text import render
from synthtune.errors import SynthtuneError
from synthtune.records import read_records, require_fields
from synthtune.registry import datamodule

log = logging.getLogger(__name__)


class _ItemDataset(Dataset):
    def __init__(self, items: list[int], questions: dict[int, str], source_ids: dict[int, Any],
                 num_examples: int) -> None:
        self.items = items
        self.questions = questions
        self.source_ids = source_ids
        self.num_examples = num_examples

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        # PT requests cycle round-robin over the training examples, as SoftSRV's contexts do.
        example = item % self.num_examples if self.num_examples else None
        return {"index": item, "question": self.questions.get(item), "source_id": self.source_ids.get(item),
                "example_index": example}


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Item numbers as a tensor; questions, source ids and example numbers as lists (``None`` where
    the mode has none)."""
    return {
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "question": [item["question"] for item in items],
        "source_id": [item["source_id"] for item in items],
        "example_index": [item["example_index"] for item in items],
    }


@datamodule
class PromptDataModule(SynthtuneDataModule):
    """What a template generation run works through: ``num_requests`` PT requests, or the questions
    of an input file to answer.

    Args:
        backbone: the generating model's name (linked from ``model.backbone`` by the CLI; prompts are
            rendered by the module, so it is only recorded here).
        path: input JSONL/CSV/Parquet of questions to answer (answer mode); ``None`` for PT/PT_SR.
        field: the rows' field that holds the question text (answer mode).
        train_path: PT/PT_SR: the training fold (a ``.jsonl``/``.csv``/``.parquet`` file or a Hugging
            Face dataset name) whose examples seed the requests, round-robin; ``None`` sends every
            request the same unseeded prompt (a question template without ``{example}``).
        text_template: how a training row becomes the example inserted into the question template,
            e.g. ``"{question}"`` or ``"{passage}\\n{question}"`` (as in ``TextDataModule``).
        num_requests: how many PT/PT_SR prompts to send (each yields up to ``num_questions`` rows).
        batch_size: items generated together.
        limit: use only the first ``limit`` rows of the input (questions to answer, or training
            examples); ``None`` uses all.
        strict: fail on broken input lines instead of skipping them with a warning.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        path: str | None = None,
        field: str = "text",
        train_path: str | None = None,
        text_template: str = "{text}",
        num_requests: int = 10,
        batch_size: int = 4,
        limit: int | None = None,
        strict: bool = False,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_requests < 0:
            raise SynthtuneError(f"need batch_size ≥ 1 and num_requests ≥ 0 (got {batch_size}, {num_requests})")
        if limit is not None and limit < 1:
            raise SynthtuneError(f"limit must be a positive number of questions or null, got {limit}")
        if path is not None and train_path is not None:
            raise SynthtuneError("give either path (questions to answer, answer mode) or train_path (examples "
                                 "that seed PT/PT_SR requests), not both")
        self.backbone, self.path, self.field = backbone, path, field
        self.train_path, self.text_template = train_path, text_template
        self.num_requests, self.batch_size, self.limit = num_requests, batch_size, limit
        self.strict, self.num_workers = strict, num_workers
        self.questions: dict[int, str] = {}
        self.source_ids: dict[int, Any] = {}
        self.examples: list[str] = []
        self._loaded = False

    @property
    def has_questions(self) -> bool:
        """Whether this datamodule reads input questions (answer mode) rather than counting requests."""
        return self.path is not None

    def load_examples(self) -> None:
        """Read the training examples once (PT/PT_SR); rows whose text is empty are skipped."""
        if self.examples or self.train_path is None:
            return
        rows = read_records(self.train_path, strict=self.strict)
        if self.limit is not None:
            rows = rows[: self.limit]
        texts = render(rows, self.text_template, str(self.train_path))
        self.examples = [t for t in texts if t.strip()]
        if len(self.examples) < len(texts):
            log.warning("%s: skipped %d example(s) whose text is empty", self.train_path, len(texts) - len(self.examples))
        if not self.examples:
            raise SynthtuneError(f"{self.train_path}: no training examples to seed the requests (empty file or "
                                 f"empty texts); check --data.init_args.train_path and --data.init_args.text_template")

    def load_questions(self) -> None:
        """Read the input questions once; a missing field or an input without questions is one line."""
        if self._loaded or self.path is None:
            return
        rows = read_records(self.path, strict=self.strict)
        if not rows:
            raise SynthtuneError(f"{self.path}: no rows to answer (empty file); pass a JSONL of questions "
                                 f"with --data.init_args.path")
        if self.limit is not None:
            rows = rows[: self.limit]
        require_fields(rows, [self.field], str(self.path))
        empty = 0
        for number, row in enumerate(rows):
            text = str(row[self.field] if row[self.field] is not None else "").strip()
            if not text:
                empty += 1
                continue
            self.questions[number] = text
            self.source_ids[number] = row.get("id")
        if empty:
            log.warning("%s: skipped %d row(s) whose %r is empty", self.path, empty, self.field)
        if not self.questions:
            raise SynthtuneError(f"{self.path}: every {self.field!r} is empty; check --data.init_args.field")
        self._loaded = True

    def setup(self, stage: str | None = None) -> None:
        self.load_questions()
        self.load_examples()

    def describe(self) -> PromptData:
        return PromptData(source=str(self.path or self.train_path or "requests"), has_questions=self.has_questions,
                        train_texts=tuple(self.examples))

    def pending_items(self) -> list[int]:
        """Items none of whose output ids is on disk yet, in order."""
        done = {i // self.ids_per_item for i in self._skip}
        items = sorted(self.questions) if self.has_questions else range(self.num_requests)
        return [i for i in items if i not in done]

    def predict_dataloader(self) -> DataLoader:
        self.load_questions()
        self.load_examples()
        dataset = _ItemDataset(self.pending_items(), self.questions, self.source_ids, len(self.examples))
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate_items)
