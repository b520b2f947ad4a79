"""Checks that run before a command does any work or writes anything: the run folder and every output
file can be written (a directory, a read-only file, a read-only or full disk are refused; a symbolic link
is written through to its target), ``--ckpt_path`` is a readable Lightning checkpoint (its signature is
checked when it loads), and a data command's outputs are locked against a second run writing them."""

from __future__ import annotations

import contextlib
import inspect
import os
import stat
from pathlib import Path
from typing import Any, Callable, Iterator

from jsonargparse import Namespace

from synthtune.errors import SynthtuneError
from synthtune.paths import OutputLock, ensure_writable_dir, run_folder_lock

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
    if subcommand == "predict":
        num_samples = config.get("data.init_args.num_samples")
        if isinstance(num_samples, int) and num_samples < 1:
            raise SynthtuneError(f"--data.init_args.num_samples is {num_samples}, so `synthtune predict` would write "
                                 f"nothing; pass 1 or more")
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


def check_output_file(path: str | os.PathLike, option: str, example: str = "samples.jsonl", what: str = "") -> Path:
    """Refuse, in one line and before any work, an output file that cannot be written: an existing
    directory, a read-only file (no write bit, even for root: it was made read-only on purpose), a folder
    that cannot be written or has no room for a first write (:func:`synthtune.paths.ensure_writable_dir`).
    A symbolic link is checked at its target, which is what gets written (``atomic_write`` writes through).
    Returns the file that will be written.

    Args:
        path: the output file as given.
        option: the option that named it (``--output``), for the message.
        example: a file name to suggest when ``path`` is a directory.
        what: what the file holds, for the message (default: the option and the file).
    """
    given = Path(path).expanduser()
    target = Path(os.path.realpath(given))
    shown = f"{given} (a link to {target})" if given.is_symlink() else str(given)
    if target.is_dir():
        raise SynthtuneError(f"{option} {shown} is a directory; pass a file in it, e.g. {option} {given / example}")
    if target.exists() and not target.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise SynthtuneError(f"{option} {shown} is read-only; make it writable (chmod u+w {target}) to replace it, "
                             f"or pass another {option}")
    ensure_writable_dir(target.parent, what or f"{option} {shown}",
                        f"pass another {option} in a folder you can write to")
    return target


#: Parameters of a data command that name a file it writes (``--output``, ``--plot``, ``--report``).
OUTPUT_PARAMETERS = ("output", "plot", "report")
#: A file name to suggest in a folder given as such an output.
EXAMPLE_NAMES = {"--plot": "map.png", "--report": "report.json"}
#: Data commands whose ``output`` is a folder they fill, not a file.
FOLDER_OUTPUTS = {"export_prompt"}


def command_outputs(function: Callable[..., Any], kwargs: dict[str, Any]) -> list[tuple[str, Path]]:
    """``(option, file)`` of every output file a data command was given (its ``str`` output parameters)."""
    if function.__name__ in FOLDER_OUTPUTS:
        return []
    parameters = inspect.signature(function).parameters
    return [(f"--{name}", Path(kwargs[name])) for name in OUTPUT_PARAMETERS
            if name in parameters and isinstance(kwargs.get(name), str) and kwargs[name]]


@contextlib.contextmanager
def claimed_outputs(function: Callable[..., Any], kwargs: dict[str, Any]) -> Iterator[None]:
    """Check every output file of a data command (:func:`check_output_file`) before it starts, and hold an
    exclusive lock on each (``<output>.lock``, :class:`synthtune.paths.OutputLock`) while it runs, so a
    second run writing the same file is refused at once in one line naming the first, instead of the two
    leaving rows of one run beside the report of the other."""
    locks = []
    try:
        for option, path in command_outputs(function, kwargs):
            target = check_output_file(path, option, example=EXAMPLE_NAMES.get(option, "rows.jsonl"))
            lock = OutputLock(target, fix=f"pass another {option}")
            lock.acquire()
            locks.append(lock)
        yield
    finally:
        for lock in reversed(locks):
            lock.release()
