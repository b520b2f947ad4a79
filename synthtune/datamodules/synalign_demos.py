"""Selected demonstration clusters → generation jobs for SynAlign's attribute prompting (predict only).

Rows are grouped by their ``cluster`` field (written by ``synthtune synalign select``; a file without
it makes every row its own cluster), and a job shows all demonstrations of one cluster to the model.
A job is one (cluster, round) pair; job ``j`` uses cluster ``j mod C`` and writes the
sample ids ``j·gen_size … j·gen_size + gen_size − 1``. A job counts as finished once all its ids are on
disk, so a resumed ``synthtune predict`` redoes only unfinished jobs (per-job seeds make a redone job
reproduce its earlier rows).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.datamodules.base import SynthtuneDataModule
from synthtune.errors import SynthtuneError
from synthtune.records import read_records, require_fields
from synthtune.tasks import load_task
from synthtune.registry import datamodule


@datamodule
class DemonstrationDataModule(SynthtuneDataModule):
    """Labelled demonstration clusters (e.g. the output of ``synthtune synalign select``) as generation jobs.

    Args:
        path: JSONL of demonstrations with a text field and an integer ``label`` (or a label name);
            rows with the same ``cluster`` form one job's demonstrations (all of one label).
        task: task name or folder whose ``meta.json`` gives the label names (``data/<task>``); ``None`` (or a
            task without a folder) takes them from ``label_names`` or the file (the ``label_name`` beside each
            index ``synthtune synalign select`` writes, else the distinct labels).
        backbone: the generator's backbone (linked from the model by the CLI; not used here).
        text_field: field holding each demonstration's text.
        label_field: field holding each demonstration's label (a label name or its index).
        label_names: the label names in index order (override the task's).
        rounds: jobs per cluster (each with its own seeds), so the output has up to
            ``rounds · clusters · gen_size`` rows.
        batch_size: jobs per predict batch.
        gen_size: examples per job; ``None`` reads ``gen_size`` from the model.
    """

    def __init__(
        self,
        path: str,
        task: str | None = None,
        backbone: str = DEFAULT_BACKBONE,
        text_field: str = "text",
        label_field: str = "label",
        label_names: list[str] | None = None,
        rounds: int = 1,
        batch_size: int = 8,
        gen_size: int | None = None,
    ) -> None:
        super().__init__()
        if rounds < 1 or batch_size < 1:
            raise SynthtuneError(f"rounds and batch_size must be >= 1, got rounds={rounds}, batch_size={batch_size}")
        self.path, self.task_name, self.backbone, self.text_field = path, task, backbone, text_field
        self.label_field, self.label_names = label_field, label_names
        self.rounds, self.batch_size, self.gen_size = rounds, batch_size, gen_size
        self.clusters: list[dict[str, Any]] = []

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "predict"):
            raise SynthtuneError("the SynAlign generation step has nothing to train; run `synthtune predict --config ...`")
        if self.clusters:
            return
        rows = read_records(self.path)
        if not rows:
            raise SynthtuneError(f"{self.path}: no demonstrations; run `synthtune synalign select` first")
        task = load_task(self.task_name, self.label_names, label_field=self.label_field, data=self.path)
        require_fields(rows, [self.text_field, self.label_field], str(self.path))
        clusters: dict[Any, dict[str, Any]] = {}
        for i, row in enumerate(rows):
            text = str(row[self.text_field]).strip()
            if not text:
                raise SynthtuneError(f"{self.path}: row {i} has an empty {self.text_field!r}; drop it or fix the file")
            label = task.label_index(row[self.label_field], str(self.path), i)
            key = ("cluster", row["cluster"]) if row.get("cluster") is not None else ("row", i)
            cluster = clusters.setdefault(key, {"texts": [], "label": label, "label_name": task.label_names[label],
                                                "demo_indices": [], "cluster": key[1]})
            if cluster["label"] != label:
                raise SynthtuneError(f"{self.path}: row {i} has label {task.label_names[label]!r} but cluster "
                                     f"{row['cluster']} is {cluster['label_name']!r}; a cluster's demonstrations "
                                     f"share one label (rerun `synthtune synalign select` or fix the cluster ids)")
            cluster["texts"].append(text)
            cluster["demo_indices"].append(int(row.get("pool_index", i)))
        self.clusters = list(clusters.values())

    @property
    def num_jobs(self) -> int:
        return self.rounds * len(self.clusters)

    def resolved_gen_size(self) -> int:
        """``gen_size``, or the model's when it was left unset."""
        if self.gen_size is not None:
            return self.gen_size
        module = self.trainer.lightning_module if getattr(self, "trainer", None) is not None else None
        size = getattr(getattr(module, "hparams", None), "gen_size", None)
        if size is None:
            raise SynthtuneError("DemonstrationDataModule needs gen_size (set data.init_args.gen_size or model.init_args.gen_size)")
        return int(size)

    def pending_jobs(self) -> list[int]:
        g = self.resolved_gen_size()
        return [j for j in range(self.num_jobs) if not all(j * g + k in self._skip for k in range(g))]

    def collate(self, jobs: list[int]) -> dict[str, Any]:
        index = [j % len(self.clusters) for j in jobs]
        clusters = [self.clusters[c] for c in index]
        return {
            "job": torch.tensor(jobs),
            "cluster": [c["cluster"] for c in clusters],
            "demonstrations": [list(c["texts"]) for c in clusters],
            "label": torch.tensor([c["label"] for c in clusters]),
            "label_name": [c["label_name"] for c in clusters],
            "demo_indices": [list(c["demo_indices"]) for c in clusters],
        }

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.pending_jobs(), batch_size=self.batch_size, shuffle=False, collate_fn=self.collate)
