"""Helpers shared by the test modules: callbacks that record what a run did, and the in-process CLI."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class LossLog(Callback):
    """Appends every training step's loss to a JSON list at ``path`` (usable by class_path from a CLI run).

    Args:
        path: JSON file the losses are written to after every step.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # manual-optimisation steps may return nothing; their logged loss is the record then
        loss = outputs["loss"] if isinstance(outputs, dict) and "loss" in outputs else trainer.callback_metrics["train/loss"]
        self.losses.append(round(float(loss), 6))
        self.path.write_text(json.dumps(self.losses))


class MetricsLog(Callback):
    """Writes the logged metrics to a JSON file at ``path`` when ``test`` or ``validate`` ends.

    Args:
        path: JSON file the metrics are written to.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def _write(self, trainer) -> None:
        self.path.write_text(json.dumps({k: round(float(v), 6) for k, v in trainer.callback_metrics.items()}))

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._write(trainer)
