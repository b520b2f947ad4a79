"""Checks that run before a Lightning run does any work or writes anything: the run folder can be
written, and ``--ckpt_path`` is a readable Lightning checkpoint (its signature is checked when it loads)."""

from __future__ import annotations

import os
from pathlib import Path

from jsonargparse import Namespace

from synthtune.errors import SynthtuneError
from synthtune.paths import ensure_writable_dir, run_folder_lock

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
        last = Path(config.checkpoint.dirpath) / "last.ckpt"  # where RunCheckpoint keeps it
        if last.is_file():
            check_checkpoint_file(last)
        elif subcommand != "fit":  # a first fit starts from scratch (Lightning warns), as documented
            raise SynthtuneError(f"--ckpt_path last: there is no checkpoint {last}, so `synthtune {subcommand}` would "
                                 f"run an untrained model; run `synthtune fit` into that run folder first, or pass "
                                 f"--ckpt_path <file.ckpt>")
    elif ckpt and ckpt not in SPECIAL_CKPT:
        check_checkpoint_file(Path(ckpt))
    if subcommand == "fit":
        refuse_a_second_fit(config)  # after the checkpoint: a broken one is the first thing to fix


def refuse_a_second_fit(config: Namespace) -> None:
    """A fit into a run folder that another fit is writing, or a fresh fit into one that holds a
    finished ``last.ckpt``, is refused in one line before anything loads: the second would replace the
    first's ``last.ckpt`` and ``config.yaml``. Resuming (``--ckpt_path last``, or a checkpoint of this
    folder) is what a folder with a ``last.ckpt`` takes. The lock itself is held by ``RunCheckpoint``
    for the whole fit; this only looks whether someone holds it now. Only the first process checks:
    the ranks Lightning launches later run this while rank 0 holds the lock."""
    if any(int(os.environ.get(var) or 0) for var in ("RANK", "LOCAL_RANK", "NODE_RANK")):
        return
    root = Path(config.trainer.default_root_dir or os.getcwd())
    probe = run_folder_lock(root)
    probe.acquire()
    probe.release()
    folder = Path(config.checkpoint.dirpath)
    last = folder / "last.ckpt"
    ckpt = config.get("ckpt_path")
    resumes = ckpt in SPECIAL_CKPT or (ckpt and Path(ckpt).resolve().parent == folder.resolve())
    if last.is_file() and not resumes:
        raise SynthtuneError(f"{root} already holds a fit ({last}), which this run would replace; pass "
                             f"--ckpt_path last to resume it, or another --trainer.default_root_dir for a new run")


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
