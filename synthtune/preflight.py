"""Checks that run before a Lightning run does any work or writes anything: the run folder can be
written, and ``--ckpt_path`` is a readable Lightning checkpoint (its signature is checked when it loads)."""

from __future__ import annotations

import os
from pathlib import Path

from jsonargparse import Namespace

from synthtune.errors import SynthtuneError
from synthtune.paths import ensure_writable_dir

#: ``--ckpt_path`` values Lightning resolves itself.
SPECIAL_CKPT = {"last", "best", "hpc", "registry"}


def preflight(subcommand: str, config: Namespace) -> None:
    """Everything a ``subcommand`` run (fit/validate/test/predict) needs, checked before it starts."""
    if subcommand == "fit":
        ensure_writable_dir(config.trainer.default_root_dir or os.getcwd(), "the run (config, checkpoints, logs)",
                            "pass --trainer.default_root_dir in a folder you can write to")
        ensure_writable_dir(config.checkpoint.dirpath, "checkpoints",
                            "pass --checkpoint.dirpath in a folder you can write to")
    ckpt = config.get("ckpt_path")
    if ckpt == "last":
        ckpt = Path(config.checkpoint.dirpath) / "last.ckpt"  # where RunCheckpoint keeps it
        if not ckpt.is_file():
            return  # Lightning starts from scratch with a warning, as documented
    elif not ckpt or ckpt in SPECIAL_CKPT:
        return
    check_checkpoint_file(Path(ckpt))


def check_checkpoint_file(path: Path) -> None:
    """Refuse, with one line, a checkpoint that cannot be read (truncated by a crash or a full disk,
    corrupt, not a checkpoint) before Lightning loads it and before anything is written. Whether it
    fits this run (its signature) is checked when Lightning loads it, before the run writes anything."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError, ...
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SynthtuneError(f"{path} is not a readable checkpoint ({first}); it may be truncated by a crash "
                             f"or a full disk: pass another .ckpt (e.g. an earlier one in checkpoints/)") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "pytorch-lightning_version"} <= set(checkpoint):
        raise SynthtuneError(f"{path} is not a Lightning checkpoint; pass a .ckpt written by `synthtune fit`")
