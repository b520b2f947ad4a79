"""Record what a PromptTuningModule or FineTuningModule predicted on its test set, so a test can recompute the
logged metrics."""

from __future__ import annotations

from collections import defaultdict

import torch
from sklearn.metrics import accuracy_score, f1_score

from synthtune.lightning_modules.classification import ClassifierSteps


def record_test_predictions(monkeypatch) -> dict[str, tuple[list[int], list[int]]]:
    """Make every classifier's ``test_step`` (prompt tuning, fine-tuning) also record its (predicted, true) labels.

    Returns a dict filled during the runs: the trainer's ``default_root_dir`` -> (predictions, labels).
    The predictions come from a second, separate ``class_logits`` call on the same batch (eval mode,
    so the same scores the module logs from).
    """
    runs: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    original = ClassifierSteps.test_step

    def test_step(self, batch, batch_idx):
        with torch.no_grad():
            predicted = self.class_logits(batch["rows"]).argmax(dim=-1)
        predictions, labels = runs[str(self.trainer.default_root_dir)]
        predictions.extend(predicted.tolist())
        labels.extend(batch["label"].tolist())
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ClassifierSteps, "test_step", test_step)
    return runs


def scores(predictions: list[int], labels: list[int]) -> dict[str, float]:
    """Accuracy and macro-F1 of recorded predictions, by scikit-learn (independent of the module's torchmetrics)."""
    return {"acc": accuracy_score(labels, predictions),
            "f1": f1_score(labels, predictions, average="macro", zero_division=0)}
