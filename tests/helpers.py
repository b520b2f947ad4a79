"""Helpers shared by the test modules: a quiet CPU Trainer, a one-thread fixture, a config as the CLI composes
it, and callbacks that record what a run did."""

from __future__ import annotations

import contextlib
import functools
import io
import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

REPO = Path(__file__).resolve().parents[1]


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


def base_of(config: str | Path) -> Path | None:
    """The base config a task file pulls in with ``config: base.yaml`` (relative to the task file), or None."""
    path = REPO / config
    base = yaml.safe_load(path.read_text()).get("config")
    return (path.parent / base).resolve() if base else None


def subcommand_of(config: str | Path) -> str:
    """The ``synthtune_subcommand`` a config (or the base it pulls in) is written for; ``fit`` if none."""
    intended = yaml.safe_load((REPO / config).read_text()).get("synthtune_subcommand")
    base = base_of(config)
    return intended or (subcommand_of(base) if base else "fit")


def composed_config(config: str | Path) -> dict:
    """``config`` (a path, relative to the repository or absolute) as the CLI composes it: ``--print_config``."""
    return json.loads(_composed((REPO / config).resolve()))


@functools.cache
def _composed(path: Path) -> str:
    from synthtune.cli import run_cli

    out = io.StringIO()
    with contextlib.chdir(REPO), contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        run_cli([subcommand_of(path), "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None)
    return json.dumps(yaml.safe_load(out.getvalue()))


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


def random_pool(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """``[n, d]`` standard-normal points from a seeded generator: a pool for GP selection and coverage tests."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
