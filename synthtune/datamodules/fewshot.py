"""Few-shot real data plus synthetic data, batched by a combination strategy, for prompt tuning.

* real training set: the LM-BFF split file ``data/<task>/kshot/<k>-<seed>/train.jsonl`` when it
  exists, else ``k`` examples per class sampled by ``seed`` from the task's ``train.jsonl``;
* dev set (model selection): the split's ``dev.jsonl``, else another ``k`` per class sampled from
  the rest of ``train.jsonl``;
* test set: the task's held-out split (``TaskSpec.eval_path``), optionally a seeded subset that is
  the same for every k-shot seed, scored once at the end by ``synthtune test``;
* synthetic set: any labelled JSONL with the real data's text fields (``--data.init_args.synthetic``).

Rows of your own need no task folder: ``train_path`` is the file the train and dev sets are sampled from,
``test_path`` the test set, ``text_field``/``label_field`` name their columns, and the label names are given or
read from ``train_path``.

A training step is ``{"real": part | None, "syn": part | None}`` with ``part = {"rows": [dict],
"label": LongTensor}``, planned by :class:`~synthtune.components.prompt_tuning.combination.CombinedBatches`. Every
rank builds the same plan and takes an equal contiguous share of each step's examples, so a DDP run
sees the same global batches as a single process. Training resumes mid-epoch exactly (the loader is
a :class:`~synthtune.datamodules.resumable.ResumableDataLoader` over step numbers).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.components.prompt_tuning.combination import (
    CombinedBatches,
    check_strategy,
    needs_synthetic,
)
from synthtune.contract import FewShotData
from synthtune.datamodules.base import ListDataset, SynthtuneDataModule
from synthtune.datamodules.resumable import ResumableDataLoader, ResumableSampler
from synthtune.errors import SynthtuneError
from synthtune.records import read_records
from synthtune.tasks import TaskSpec, check_label_coverage, load_task, read_labeled
from synthtune.registry import datamodule

TEXT_FIELDS = ("text", "text_a", "text_b")


def collate_part(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of one kind as ``{"rows": [{field: text}], "label": LongTensor}``."""
    return {"rows": [{k: v for k, v in r.items() if k != "label"} for r in rows],
            "label": torch.tensor([int(r["label"]) for r in rows], dtype=torch.long)}


def _identity(batch: Any) -> Any:
    return batch


def sample_per_class(rows: list[dict[str, Any]], num_labels: int, k: int, seed: int,
                     exclude: set[int] = frozenset()) -> list[int]:
    """Indices of ``k`` rows per class, drawn with ``seed`` from rows not in ``exclude`` (sorted)."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in range(num_labels):
        pool = [i for i, r in enumerate(rows) if r["label"] == label and i not in exclude]
        take = min(k, len(pool))
        if take:
            chosen.extend(int(i) for i in rng.choice(pool, size=take, replace=False))
    return sorted(chosen)


def synthetic_columns(raw: list[dict[str, Any]], task: TaskSpec) -> TaskSpec:
    """How synthetic rows are read: the generated text is ``text`` (every synthtune generator writes it), the label
    the real data's ``label_field`` when every row has it (a SoftSRV set that carried it), else ``label``."""
    label = task.label_field if raw and all(task.label_field in r for r in raw) else "label"
    return dataclasses.replace(task, text_field="text", label_field=label)


def check_synthetic_fields(raw: list[dict[str, Any]], task: TaskSpec, source: str) -> None:
    """Synthetic rows must use exactly the real data's text fields (``text`` or ``text_a``/``text_b``)."""
    for i, row in enumerate(raw):
        present = {f for f in TEXT_FIELDS if f in row}
        if present != set(task.text_fields):
            raise SynthtuneError(
                f"{source}: row {i} has text field(s) {sorted(present) or 'none'} but the real {task.name} data "
                f"uses {list(task.text_fields)}; write synthetic rows with the same fields as the real data"
            )


class _StepDataset(Dataset):
    """Step ``s`` of the current plan, as this rank's share of its real and synthetic examples."""

    def __init__(self, combined: CombinedBatches, real: list[dict], syn: list[dict], rank: int, world: int) -> None:
        self.combined, self.real, self.syn, self.rank, self.world = combined, real, syn, rank, world

    def __len__(self) -> int:
        return len(self.combined)

    def _share(self, indices: list[int] | None) -> list[int] | None:
        if not indices:
            return None
        if self.world == 1:
            return list(indices)
        if len(indices) < self.world:  # a too-small last batch: every rank still gets one example
            return [indices[self.rank % len(indices)]]
        return np.array_split(np.asarray(indices), self.world)[self.rank].tolist()

    def __getitem__(self, step: int) -> dict[str, Any]:
        plan = self.combined._plan[step]
        real, syn = self._share(plan["real"]), self._share(plan["syn"])
        return {"real": collate_part([self.real[i] for i in real]) if real else None,
                "syn": collate_part([self.syn[i] for i in syn]) if syn else None}


class _StepSampler(ResumableSampler):
    """Every step of the plan in order, on every rank (a DistributedSampler of one replica, so
    Lightning does not shard it: the plan itself is shared and each step is split across ranks)."""

    def __init__(self, dataset: _StepDataset) -> None:
        DistributedSampler.__init__(self, dataset, num_replicas=1, rank=0, shuffle=False)
        self.batch_size = 1
        self.skip_batches = 0
        self.consumed_batches = 0
        self.combined = dataset.combined

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.combined.set_epoch(epoch)

    def __iter__(self):
        if self.combined.epoch != self.epoch:
            self.combined.set_epoch(self.epoch)
        return super().__iter__()


@datamodule
class FewShotDataModule(SynthtuneDataModule):
    """k-shot real data, optional synthetic data and a combination strategy.

    Args:
        task: a task folder name under the data root (``sst2``, ``rte``, ...) or a path to one; for rows of your
            own (``train_path``) any name, or ``None`` (the file's name).
        backbone: the backbone name (linked from the model by the CLI; the rows are tokenised by the
            model, so it is only recorded here).
        k: examples per class.
        seed: k-shot seed (LM-BFF seeds are 13, 21, 42, 87, 100); also seeds the batch plan.
        synthetic: labelled JSONL of synthetic examples with the real data's fields, or ``None``.
        strategy: ``real``, ``syn`` (synthetic only; the real split still gives the dev set),
            ``real+syn``, ``real+syn+ls``, ``real->syn``, ``syn->real`` or ``paired``.
        batch_size: examples per training batch (with ``paired``: per source, so a step has two).
        eval_batch_size: examples per dev/test batch.
        test_limit: score a seeded subset of this many test examples (the same for every seed);
            ``None`` scores the whole split.
        synthetic_limit: use at most this many synthetic rows (a seeded subset); ``None`` uses all.
        num_workers: DataLoader worker processes.
        strict: fail on broken lines of a JSONL file instead of skipping them with a warning.
        train_path: labelled rows (JSONL, CSV, Parquet, ...) to sample the k-shot train and dev sets from, instead
            of the task's split files.
        test_path: labelled rows to test on, instead of the task's held-out split.
        label_names: the label names in index order; ``None``: the task's, or read from ``train_path``.
        text_field: the column holding each real row's text (single-sentence tasks).
        label_field: the column holding each real row's label (a label name or its index).
    """

    def __init__(
        self,
        task: str | None = None,
        backbone: str = DEFAULT_BACKBONE,
        k: int = 16,
        seed: int = 13,
        synthetic: str | None = None,
        strategy: str = "real",
        batch_size: int = 8,
        eval_batch_size: int = 32,
        test_limit: int | None = None,
        synthetic_limit: int | None = None,
        num_workers: int = 0,
        strict: bool = False,
        train_path: str | None = None,
        test_path: str | None = None,
        label_names: list[str] | None = None,
        text_field: str = "text",
        label_field: str = "label",
    ) -> None:
        super().__init__()
        check_strategy(strategy)
        if k < 1 or batch_size < 1 or eval_batch_size < 1:
            raise SynthtuneError(f"k, batch_size and eval_batch_size must be >= 1, got {k}, {batch_size}, "
                                 f"{eval_batch_size}; pass positive numbers")
        if test_limit is not None and test_limit < 1:
            raise SynthtuneError(f"test_limit must be >= 1 or null, got {test_limit}")
        if needs_synthetic(strategy) and not synthetic:
            raise SynthtuneError(f"strategy {strategy!r} needs synthetic data but none was given; pass "
                                 f"--data.init_args.synthetic path.jsonl or use --data.init_args.strategy real")
        self.task_name, self.backbone, self.k, self.seed = task, backbone, k, seed
        self.synthetic, self.strategy, self.batch_size = synthetic, strategy, batch_size
        self.eval_batch_size, self.test_limit, self.synthetic_limit = eval_batch_size, test_limit, synthetic_limit
        self.num_workers, self.strict = num_workers, strict
        self.train_path, self.test_path = train_path, test_path
        self.task: TaskSpec = load_task(task, label_names, text_field=text_field, label_field=label_field,
                                        data=train_path, strict=strict)
        self.train_real: list[dict[str, Any]] = []
        self.train_syn: list[dict[str, Any]] = []
        self.dev_rows: list[dict[str, Any]] = []
        self.test_rows: list[dict[str, Any]] = []
        self._loaded = False

    # ------------------------------------------------------------------ data
    def load_real(self) -> None:
        """The k-shot train and dev sets, from split files or sampled per class by seed."""
        task = self.task
        train_file, dev_file = task.kshot_path(self.seed, "train", self.k), task.kshot_path(self.seed, "dev", self.k)
        if train_file.is_file() and not self.train_path:
            self.train_real = read_labeled(train_file, task, strict=self.strict)
            self.dev_rows = read_labeled(dev_file, task, strict=self.strict) if dev_file.is_file() else []
            source = str(train_file)
        else:
            pool_file = Path(self.train_path) if self.train_path else task.folder / "train.jsonl"
            if not self.train_path and not pool_file.is_file():
                raise SynthtuneError(f"task {task.name!r} has neither {train_file} nor {pool_file} to sample "
                                     f"{self.k} examples per class from; add one of them")
            pool = read_labeled(pool_file, task, strict=self.strict)
            train_idx = sample_per_class(pool, task.num_labels, self.k, self.seed)
            dev_idx = sample_per_class(pool, task.num_labels, self.k, self.seed + 1, exclude=set(train_idx))
            self.train_real = [pool[i] for i in train_idx]
            self.dev_rows = [pool[i] for i in dev_idx]
            source = f"{pool_file} (sampled {self.k} per class, seed {self.seed})"
        check_label_coverage(self.train_real, task, source)

    def load_synthetic(self) -> None:
        """The synthetic rows, validated against the task (labels, fields); empty samples are skipped."""
        if not self.synthetic:
            return
        path = Path(self.synthetic)
        raw = read_records(path, strict=self.strict)
        check_synthetic_fields(raw, self.task, str(path))
        rows = read_labeled(path, synthetic_columns(raw, self.task), allow_empty=True, strict=self.strict,
                            drop_empty=True)
        if self.synthetic_limit is not None and len(rows) > self.synthetic_limit:
            keep = np.random.default_rng(self.seed).permutation(len(rows))[: self.synthetic_limit]
            rows = [rows[i] for i in sorted(keep.tolist())]
        if not rows and needs_synthetic(self.strategy):
            raise SynthtuneError(f"{path}: the synthetic set is empty but strategy {self.strategy!r} needs synthetic "
                                 f"examples; generate synthetic data first or use --data.init_args.strategy real")
        self.train_syn = rows

    def load_test(self) -> None:
        rows = read_labeled(self.test_path or self.task.eval_path(), self.task, strict=self.strict)
        if self.test_limit is not None and len(rows) > self.test_limit:
            # Seed 0, not the k-shot seed: every seed is scored on the same test examples.
            keep = np.random.default_rng(0).permutation(len(rows))[: self.test_limit]
            rows = [rows[i] for i in sorted(keep.tolist())]
        self.test_rows = rows

    def setup(self, stage: str | None = None) -> None:
        if not self._loaded:
            self.load_real()
            self.load_synthetic()
            self._loaded = True
        if stage in ("test", None) and not self.test_rows:
            self.load_test()

    def describe(self) -> FewShotData:
        task = self.task
        return FewShotData(source=task.name, label_names=tuple(task.label_names), text_fields=tuple(task.text_fields),
                        strategy=self.strategy, demonstrations=tuple(self.train_real),
                        columns=tuple(task.column(f) for f in task.text_fields))

    # --------------------------------------------------------------- loaders
    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        combined = CombinedBatches(self.strategy, len(self.train_real), len(self.train_syn), self.batch_size,
                                   seed=self.seed)
        dataset = _StepDataset(combined, self.train_real, self.train_syn, rank, world)
        self._train_loader = ResumableDataLoader(dataset, batch_size=None, sampler=_StepSampler(dataset),
                                                 collate_fn=_identity, num_workers=self.num_workers)
        return self._train_loader

    def _eval_loader(self, rows: list[dict[str, Any]]) -> DataLoader:
        return DataLoader(ListDataset(rows), batch_size=self.eval_batch_size, shuffle=False,
                          collate_fn=collate_part, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.dev_rows) if self.dev_rows else []

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_rows)
