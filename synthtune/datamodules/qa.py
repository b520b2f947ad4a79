"""(question, answer) rows → causal-LM batches with the loss on the answer only; test questions for
exact match.

A training example is ``prompt_template.format(question=...)`` (rendered under the chat template when
``use_chat_template``), then ``answer_separator + answer`` and EOS. Labels are ``-100`` on the prompt
and the padding, so the loss is the answer's next-token loss. Test batches carry the filled-in prompts
(rendered and tokenized by ``generate_from_text`` exactly as for training) and the gold final numbers (GSM8K: the number after ``####``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from torch.utils.data import DataLoader

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.components.gsm8k_eval import extract_final_number
from synthtune.components.padding import right_pad
from synthtune.components.text_generation import render_prompt
from synthtune.datamodules.base import ListDataset, SynthtuneDataModule
from synthtune.errors import SynthtuneError
from synthtune.records import read_records, require_fields
from synthtune.templates import Template
from synthtune.registry import datamodule

log = logging.getLogger(__name__)
IGNORE_INDEX = -100




def build_example(prompt_ids: list[int], answer_ids: list[int], eos_id: int, max_length: int) -> dict[str, list[int]] | None:
    """``prompt + answer + EOS`` cut to ``max_length`` (the answer loses its tail), with labels on the
    answer and EOS only; ``None`` when the prompt leaves no room for an answer token."""
    room = max_length - len(prompt_ids)
    if room < 2:
        return None
    answer = (answer_ids + [eos_id])[:room]
    return {"input_ids": prompt_ids + answer, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer}


def collate_examples(items: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids`` (pad id) and ``labels`` (-100); attention mask 1 on real tokens."""
    ids, mask = right_pad([item["input_ids"] for item in items], pad_id)
    labels, _ = right_pad([item["labels"] for item in items], IGNORE_INDEX)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_test(items: list[dict[str, Any]], use_chat_template: bool) -> dict[str, Any]:
    """Test questions: filled-in prompts (not yet chat-rendered), gold numbers, and how to render."""
    return {"prompt": [i["prompt"] for i in items], "question": [i["question"] for i in items],
            "gold": [i["gold"] for i in items], "index": torch.tensor([i["index"] for i in items]),
            "use_chat_template": use_chat_template}


@datamodule
class QADataModule(SynthtuneDataModule):
    """Supervised fine-tuning data: (question, answer) rows in, answer-only-loss batches out.

    Args:
        path: training rows (``.jsonl``/``.csv``/``.parquet``), e.g. generated answers or GSM8K train.
        backbone: the model whose tokenizer is used (linked to ``model.backbone`` by the CLI).
        question_field: the rows' question field.
        answer_field: the rows' answer field.
        prompt_template: how a question becomes the prompt; uses ``{question}``.
        answer_separator: text between the prompt and the answer.
        use_chat_template: render the prompt as a user turn under the tokenizer's chat template.
        max_length: longest example in tokens (longer answers are cut, with one warning).
        batch_size: examples per training batch, and test questions per generation batch.
        limit: train on at most this many rows (a seeded random subset); ``None`` uses all.
        val_fraction: share of rows held out for ``val/loss`` (seeded); 0 disables validation.
        test_path: test rows for ``synthtune test`` (GSM8K format: the answer ends with ``#### N``).
        test_limit: score only the first ``test_limit`` test rows; ``None`` scores all.
        seed: seed of the subset, the split and the shuffling.
        strict: fail on broken JSONL lines instead of skipping them with a warning.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        path: str,
        backbone: str = DEFAULT_BACKBONE,
        question_field: str = "question",
        answer_field: str = "answer",
        prompt_template: Template = "Question: {question}\nAnswer:",
        answer_separator: str = " ",
        use_chat_template: bool = False,
        max_length: int = 384,
        batch_size: int = 4,
        limit: int | None = None,
        val_fraction: float = 0.0,
        test_path: str | None = None,
        test_limit: int | None = None,
        seed: int = 0,
        strict: bool = False,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if max_length < 4 or batch_size < 1:
            raise SynthtuneError(f"need max_length ≥ 4 and batch_size ≥ 1 (got {max_length}, {batch_size})")
        if not 0.0 <= val_fraction < 1.0:
            raise SynthtuneError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if "{question}" not in prompt_template:
            raise SynthtuneError(f"prompt_template {prompt_template!r} lacks {{question}}; e.g. 'Question: {{question}}\\nAnswer:'")
        self.path, self.backbone = path, backbone
        self.question_field, self.answer_field = question_field, answer_field
        self.prompt_template, self.answer_separator = prompt_template, answer_separator
        self.use_chat_template, self.max_length, self.batch_size = use_chat_template, max_length, batch_size
        self.limit, self.val_fraction, self.test_path, self.test_limit = limit, val_fraction, test_path, test_limit
        self.seed, self.strict, self.num_workers = seed, strict, num_workers
        self.train_examples: list[dict[str, list[int]]] = []
        self.val_examples: list[dict[str, list[int]]] = []
        self.test_items: list[dict[str, Any]] = []


    def prompt(self, question: str) -> str:
        """The text the model sees before the answer (chat-rendered when asked)."""
        return render_prompt(self.tokenizer, self.prompt_template.format(question=question), self.use_chat_template)

    # ------------------------------------------------------------------ rows
    def _rows(self, path: str, limit: int | None, shuffle_subset: bool) -> list[dict[str, Any]]:
        rows = read_records(path, strict=self.strict)
        if not rows:
            raise SynthtuneError(f"{path}: no (question, answer) rows (empty file); check the path")
        require_fields(rows, [self.question_field, self.answer_field], str(path))
        kept = [r for r in rows if str(r[self.question_field] or "").strip() and str(r[self.answer_field] or "").strip()]
        if len(kept) < len(rows):
            log.warning("%s: skipped %d row(s) with an empty question or answer", path, len(rows) - len(kept))
        if limit is not None and len(kept) > limit:
            if shuffle_subset:
                order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(self.seed)).tolist()
                kept = [kept[i] for i in sorted(order[:limit])]
            else:
                kept = kept[:limit]
        if not kept:
            raise SynthtuneError(f"{path}: no row has both a {self.question_field!r} and an {self.answer_field!r}; "
                                 f"check --data.init_args.question_field/answer_field")
        return kept

    def encode(self, rows: list[dict[str, Any]]) -> list[dict[str, list[int]]]:
        """Token ids and answer-only labels of each row (rows whose prompt fills ``max_length`` are dropped)."""
        tok = self.tokenizer
        prompts = [self.prompt(str(r[self.question_field])) for r in rows]
        # generate_from_text tokenizes a rendered prompt the same way at test time.
        prompt_ids = tok(prompts, add_special_tokens=not self.use_chat_template)["input_ids"]
        answers = [self.answer_separator + str(r[self.answer_field]).strip() for r in rows]
        answer_ids = tok(answers, add_special_tokens=False)["input_ids"]
        examples, cut, dropped = [], 0, 0
        for p, a in zip(prompt_ids, answer_ids):
            example = build_example(p, a, tok.eos_token_id, self.max_length)
            if example is None:
                dropped += 1
                continue
            cut += len(p) + len(a) + 1 > self.max_length
            examples.append(example)
        if cut or dropped:
            log.warning("max_length=%d: %d answer(s) cut, %d example(s) dropped (prompt too long)",
                        self.max_length, cut, dropped)
        if not examples:
            raise SynthtuneError(f"every example's prompt is longer than max_length={self.max_length}; raise it")
        return examples

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None) and not self.train_examples:
            rows = self._rows(self.path, self.limit, shuffle_subset=True)
            order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed)).tolist()
            n_val = round(len(rows) * self.val_fraction) if len(rows) > 1 else 0
            self.val_examples = self.encode([rows[i] for i in sorted(order[:n_val])]) if n_val else []
            self.train_examples = self.encode([rows[i] for i in sorted(order[n_val:])])
        if stage == "test" and not self.test_items:
            if not self.test_path:
                raise SynthtuneError("synthtune test needs test questions: pass --data.init_args.test_path "
                                     "data/gsm8k/test.jsonl")
            rows = self._rows(self.test_path, self.test_limit, shuffle_subset=False)
            items = []
            for index, row in enumerate(rows):
                gold = extract_final_number(str(row[self.answer_field]))
                if gold is None:
                    continue
                question = str(row[self.question_field])
                items.append({"index": index, "question": question, "gold": gold,
                              "prompt": self.prompt_template.format(question=question)})
            if len(items) < len(rows):
                log.warning("%s: skipped %d test row(s) whose answer has no final number",
                            self.test_path, len(rows) - len(items))
            if not items:
                raise SynthtuneError(f"{self.test_path}: no test answer ends with a number ('#### N'); "
                                     f"check the file or --data.init_args.answer_field")
            self.test_items = items

    # --------------------------------------------------------------- loaders
    def _collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_examples(items, self.tokenizer.pad_token_id)

    def train_dataloader(self) -> DataLoader:
        dataset = ListDataset(self.train_examples)
        return self.resumable_loader(dataset, self.batch_size, self._collate, self.seed, self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_examples:
            return []
        return DataLoader(ListDataset(self.val_examples), batch_size=self.batch_size, collate_fn=self._collate,
                          num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(ListDataset(self.test_items), batch_size=self.batch_size,
                          collate_fn=functools.partial(collate_test, use_chat_template=self.use_chat_template),
                          num_workers=self.num_workers)

