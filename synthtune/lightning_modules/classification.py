"""What the few-shot classifiers share (prompt tuning, full fine-tuning): the supervised step over a
combination strategy's batch, and accuracy / macro-F1 on the dev and test sets.

A subclass provides ``class_logits(rows) -> [B, C]`` and calls :meth:`ClassifierSteps.init_metrics`
once it knows the number of classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from synthtune.components.prompt_tuning.combination import smoothed_cross_entropy, smoothing_for_step


class ClassifierSteps:
    """Mixin for a LightningModule that scores rows of a labelled task (see the module docstring)."""

    combination: str = "real"

    def init_metrics(self, num_classes: int) -> None:
        """Accuracy and macro-F1 for the ``val`` and ``test`` splits."""
        self.metrics = torch.nn.ModuleDict({
            f"{split}_{name}": metric
            for split in ("val", "test")
            for name, metric in (("acc", MulticlassAccuracy(num_classes=num_classes, average="micro")),
                                 ("f1", MulticlassF1Score(num_classes=num_classes, average="macro")))
        })

    def supervised_step(self, batch: dict[str, Any]) -> Tensor:
        """Cross-entropy over the step's real and synthetic examples (smoothed for synthetic ones
        under ``real+syn+ls``)."""
        parts = [p for p in (batch.get("real"), batch.get("syn")) if p is not None]
        rows = [r for p in parts for r in p["rows"]]
        labels = torch.cat([p["label"] for p in parts]).to(self.device)
        step = {kind: list(range(len(batch[kind]["rows"]))) if batch.get(kind) is not None else None
                for kind in ("real", "syn")}
        # Label smoothing on synthetic examples only (real+syn+ls); zeros for every other example.
        smoothing = smoothing_for_step(step, self.combination, self.hparams.label_smoothing)
        loss = smoothed_cross_entropy(self.class_logits(rows), labels, smoothing)
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(rows))
        return loss

    def _evaluate(self, part: dict[str, Any], split: str) -> None:
        logits = self.class_logits(part["rows"])
        labels = part["label"].to(self.device)
        n = labels.shape[0]
        preds = logits.argmax(dim=-1)
        for name in ("acc", "f1"):
            metric = self.metrics[f"{split}_{name}"]
            metric.update(preds, labels)
            self.log(f"{split}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "acc", batch_size=n)
        self.log(f"{split}/loss", torch.nn.functional.cross_entropy(logits, labels), on_step=False, on_epoch=True,
                 sync_dist=True, batch_size=n)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")
