"""The soft-prompt-tuning classifier of ``synthtune synalign evaluate --classifier prompt_tuning``.

Each training set gets a fresh :class:`~synthtune.lightning_modules.prompt_tuning.PromptTuningModule`
built from a prompt-tuning config's ``model.init_args`` (template, label words, backbone, prompt
length, lr), trained in-process by a Lightning Trainer for ``max_steps`` on
:class:`~synthtune.datamodules.given_rows.GivenRowsDataModule`, and scored by ``trainer.test`` on
the test rows (accuracy and macro-F1 from the module's torchmetrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.errors import SynthtuneError
from synthtune.tasks import TaskSpec

MODULE = "PromptTuningModule"


@dataclass(frozen=True)
class PromptTuningClassifier:
    """Settings of the prompt-tuning classifier, read from a Lightning config.

    Attributes:
        config: the config file they came from.
        init_args: ``PromptTuningModule`` arguments (its ``seed`` is replaced by the run's seed).
        steps: training steps per training set.
        batch_size: training rows per step.
        eval_batch_size: test rows per batch.
        seed: seed of the prompt's initialisation and the batch order.
    """

    config: str
    init_args: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 8
    eval_batch_size: int = 32
    seed: int = 0

    @classmethod
    def from_config(cls, path: str, steps: int | None, seed: int) -> PromptTuningClassifier:
        """Read ``model.init_args`` (a PromptTuningModule), ``trainer.max_steps`` and the data batch sizes of the
        config as ``synthtune fit`` composes it."""
        from synthtune.api.runs import compose

        if not Path(path).is_file():
            raise SynthtuneError(f"prompt-tuning config {path} not found; pass --prompt_tuning_config "
                                 f"configs/prompt_tuning/<task>.yaml (or any config whose model is a {MODULE})")
        config = compose("fit", path)  # base files and dotted keys applied, as fit would
        model = config.get("model") or {}
        if not str(model.get("class_path", "")).endswith(MODULE):
            raise SynthtuneError(f"{path}: model.class_path is {model.get('class_path')!r}, not a {MODULE}; "
                                 f"use a config from configs/prompt_tuning/")
        data = (config.get("data") or {}).get("init_args") or {}
        steps = steps if steps is not None else int((config.get("trainer") or {}).get("max_steps") or 1000)
        if steps < 1:
            raise SynthtuneError(f"--prompt_tuning_steps must be >= 1, got {steps}")
        return cls(config=str(path), init_args=dict(model.get("init_args") or {}), steps=steps,
                   batch_size=int(data.get("batch_size", 8)), eval_batch_size=int(data.get("eval_batch_size", 32)),
                   seed=seed)

    def description(self) -> str:
        a = self.init_args
        return (f"soft-prompt tuning ({MODULE}, {a.get('backbone', 'default backbone')}, prompt length "
                f"{a.get('prompt_length', 100)}, {self.steps} steps, config {self.config})")

    def scores(self, task: TaskSpec, train_rows: list[dict[str, Any]], test_rows: list[dict[str, Any]],
               root: Path) -> dict[str, float] | None:
        """Train a fresh soft prompt on ``train_rows`` and score it on ``test_rows``; ``None`` for a single label."""
        import lightning.pytorch as pl

        from synthtune.datamodules.given_rows import GivenRowsDataModule
        from synthtune.lightning_modules.prompt_tuning import PromptTuningModule

        if len({r["label"] for r in train_rows}) < 2:
            return None
        model = PromptTuningModule(**{**self.init_args, "seed": self.seed})
        data = GivenRowsDataModule(str(task.folder), train_rows, test_rows, backbone=model.backbone_spec.name,
                                   seed=self.seed, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size,
                                   label_names=list(task.label_names))
        trainer = pl.Trainer(default_root_dir=str(root), max_steps=self.steps, accelerator="auto", devices=1,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
        trainer.fit(model, datamodule=data)
        result = trainer.test(model, datamodule=data, verbose=False)[0]
        return {"accuracy": float(result["test/acc"]), "macro_f1": float(result["test/f1"])}
