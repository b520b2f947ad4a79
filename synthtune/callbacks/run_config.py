"""The run's ``config.yaml``: saved once the checkpoint has loaded, with paths that work from anywhere."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback

from synthtune.paths import atomic_write_bytes
from synthtune.records import FILE_SUFFIXES

log = logging.getLogger("synthtune")


def absolute_paths(config: Namespace, cwd: Path) -> Namespace:
    """A copy of a run's ``config`` where the run folder, the checkpoint folder and every model/data
    argument that names an existing file or folder by a relative path (``data/train.jsonl``) are
    absolute, so the saved config works from any working directory."""
    config = config.clone()
    for key in ("trainer.default_root_dir", "checkpoint.dirpath"):
        if config.get(key) is not None:
            config[key] = str((cwd / Path(config[key]).expanduser()).resolve())
    for key, value in config.items():
        if not key.startswith(("data.", "model.")) or not isinstance(value, str):
            continue
        path = Path(value).expanduser()
        # only what reads as a path: "train" (a split) or "smollm2-135m" (a backbone name) stay as they are
        looks_like_path = os.sep in value or path.suffix.lower() in FILE_SUFFIXES
        if looks_like_path and not path.is_absolute() and (cwd / path).exists():
            config[key] = str((cwd / path).resolve())
    return config


class RunConfigSaver(SaveConfigCallback):
    """Writes the fit config to ``<default_root_dir>/config.yaml`` (atomically, replacing an older
    one), so ``synthtune predict --config <run>/config.yaml`` reproduces the run from any folder
    (paths in it are absolute). It is written only once ``--ckpt_path`` has been loaded and checked,
    so a refused checkpoint leaves the run folder untouched."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Nothing is written at setup: the checkpoint has not been checked yet."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.strategy.restore_checkpoint_after_setup:  # the checkpoint loaded before this hook
            self._save(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer)  # strategies that restore after setup (FSDP, DeepSpeed) have loaded it now

    def _save(self, trainer: Trainer) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / self.config_filename
            text = self.parser.dump(absolute_paths(self.config, Path.cwd()), skip_none=False)
            atomic_write_bytes(path, text.encode("utf-8"))
            log.info("config saved to %s", path)
        self.already_saved = True
