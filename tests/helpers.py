"""Helpers shared by the test modules: a quiet CPU Trainer, a one-thread fixture, and callbacks that record
what a run did."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


def trainer(root, max_steps: int = -1, every: int | None = None, callbacks=(), **kwargs) -> pl.Trainer:
    """A one-device CPU Trainer under ``root`` with no logger, progress bar or model summary.

    Args:
        root: the run folder (``default_root_dir``).
        max_steps: training steps (-1: Lightning's default, no limit).
        every: when set, a ModelCheckpoint in ``root/checkpoints`` writes ``last.ckpt`` and keeps a
            checkpoint every ``every`` training steps.
        callbacks: more callbacks, after the checkpoint.
        **kwargs: any other ``pl.Trainer`` argument.
    """
    checkpoint = [ModelCheckpoint(dirpath=str(Path(root) / "checkpoints"), save_last=True, every_n_train_steps=every,
                                  save_top_k=-1)] if every else []
    return pl.Trainer(default_root_dir=str(root), max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[*checkpoint, *callbacks],
                      **kwargs)


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensor ops run fastest on one thread; on a shared, busy machine 2 threads can be 100x slower.
    Autouse in every module that imports it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
