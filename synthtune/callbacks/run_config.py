"""The run's ``config.yaml``: saved once the checkpoint has loaded, with paths that work from anywhere,
even after the run folder is moved."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback

from synthtune.paths import atomic_write_bytes
from synthtune.preflight import SPECIAL_CKPT
from synthtune.records import FILE_SUFFIXES

log = logging.getLogger("synthtune")


#: Set in a run's saved ``config.yaml``: the run's own paths in it are relative to that file's folder.
RELATIVE_FLAG = "run_paths_relative_to_config"
#: The run's own paths: the run folder, where its checkpoints and samples go, and what it resumed from.
RUN_PATH_KEYS = ("trainer.default_root_dir", "checkpoint.dirpath", "writer.output_path", "ckpt_path")


def portable_paths(config: Namespace, cwd: Path) -> Namespace:
    """A copy of a run's ``config`` that works from any working directory and after the run folder
    is moved: every model/data argument that names an existing file or folder by a relative path
    (``data/train.jsonl``) is absolute, the run folder is ``.`` (the folder of the saved
    ``config.yaml``), paths inside it are relative to it, and the checkpoint folder and samples file
    are left to their defaults (``<run>/checkpoints``, ``<run>/samples.jsonl``) when they are those."""
    config = config.clone()
    root = (cwd / Path(config.trainer.default_root_dir or cwd).expanduser()).resolve()
    defaults = {"checkpoint.dirpath": root / "checkpoints", "writer.output_path": root / "samples.jsonl"}
    for key in RUN_PATH_KEYS:
        value = config.get(key)
        if value is None or (key == "ckpt_path" and value in SPECIAL_CKPT):
            continue
        path = (cwd / Path(value).expanduser()).resolve()
        if defaults.get(key) == path:
            config[key] = None  # derived from the run folder again when the config is loaded
        elif path.is_relative_to(root):
            config[key] = str(path.relative_to(root))
        else:
            config[key] = str(path)
    config[RELATIVE_FLAG] = True
    for key, value in config.items():
        if not key.startswith(("data.", "model.")) or not isinstance(value, str):
            continue
        path = Path(value).expanduser()
        # only what reads as a path: "train" (a split) or "smollm2-135m" (a backbone name) stay as they are
        looks_like_path = os.sep in value or path.suffix.lower() in FILE_SUFFIXES
        if looks_like_path and not path.is_absolute() and (cwd / path).exists():
            config[key] = str((cwd / path).resolve())
    return config


def _yaml_value(data: Any, key: str) -> Any:
    """``data["a"]["b"]`` for ``key`` ``a.b`` (``None`` when absent)."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def resolve_run_paths(config: Namespace) -> None:
    """In a config loaded from a run's saved ``config.yaml``, resolve the run's own relative paths
    against that file's folder (in place), so the run works from any working directory and after
    ``mv runs/x elsewhere/y``. A value given on the command line or by a later config stays relative
    to the working directory, as every command-line path is."""
    if not config.get(RELATIVE_FLAG):
        return
    for config_file in reversed(config.get("config") or []):
        file = Path(config_file.absolute)
        saved = yaml.safe_load(file.read_text(encoding="utf-8"))
        if _yaml_value(saved, RELATIVE_FLAG):
            break
    else:
        return  # the flag came from the command line: nothing to resolve against
    for key in RUN_PATH_KEYS:
        value = config.get(key)
        if (isinstance(value, str) and value == _yaml_value(saved, key) and value not in SPECIAL_CKPT
                and not Path(value).expanduser().is_absolute()):
            config[key] = str(file.parent / value)


class RunConfigSaver(SaveConfigCallback):
    """Writes the fit config to ``<default_root_dir>/config.yaml`` (atomically, replacing an older
    one), so ``synthtune predict --config <run>/config.yaml`` reproduces the run from any folder and
    after the run folder is moved (see :func:`portable_paths`). It is written only once ``--ckpt_path`` has been loaded and checked,
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
            text = self.parser.dump(portable_paths(self.config, Path.cwd()), skip_none=False)
            atomic_write_bytes(path, text.encode("utf-8"))
            log.info("config saved to %s", path)
        self.already_saved = True
