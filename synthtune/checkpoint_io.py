"""Checkpoints written so that a kill or a full disk never destroys the previous one.

Lightning's ``TorchCheckpointIO`` saves through an fsspec transaction, which writes the checkpoint
into ``$TMPDIR`` and then moves it into place. When ``$TMPDIR`` is on another filesystem than the run
folder (a tmpfs ``/tmp``, the run on disk) that move is a truncate-and-copy: a kill during the copy
leaves a 0-byte ``last.ckpt`` and an orphaned temporary file. :class:`AtomicCheckpointIO` writes the
checkpoint into a temporary file in the checkpoint folder itself, fsyncs it and ``os.replace``s it
onto the target, so ``last.ckpt`` is the old checkpoint until the new one is complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves go through :func:`synthtune.paths.atomic_write` (a
    temporary file beside the target, flush + fsync, ``os.replace``, whatever ``$TMPDIR`` is). A
    temporary file left by a killed save is deleted by the next save of that checkpoint. A save that
    fails for lack of space or permission is one line naming the file; the previous checkpoint stays.
    Remote paths (``s3://``, ...) keep Lightning's own saving."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        try:
            with atomic_write(path) as fh:
                torch.save(checkpoint, fh)
        except Exception as exc:  # noqa: BLE001 - torch turns a failed write into "RuntimeError: unexpected pos"
            cause = os_error_in(exc)
            if cause is None:
                raise
            raise SynthtuneError(
                f"cannot write checkpoint {path} ({cause.strerror or cause}); the previous checkpoint there is "
                "unchanged: free some space (or pass --checkpoint.dirpath on another disk), then resume "
                "with --ckpt_path last") from exc


def os_error_in(exc: BaseException) -> Optional[OSError]:
    """The ``OSError`` behind ``exc`` (itself, its cause or its context), if any: torch's writer reports a
    full disk or a file size limit as ``RuntimeError: ... unexpected pos`` raised while handling it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def use_atomic_checkpoints(trainer: Any) -> None:
    """Give ``trainer`` atomic local checkpoint saves, unless its strategy brings its own checkpoint
    IO (DeepSpeed, FSDP, XLA, an async or user-given plugin), which is kept as it is."""
    strategy = trainer.strategy
    if type(getattr(strategy, "checkpoint_io", None)) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()


def resume_checkpoint(folder: str | Path) -> Optional[Path]:
    """The checkpoint a run folder's fit resumes from: ``<folder>/last.ckpt``, else (it was deleted, or a save
    never got that far) the most recently written other ``*.ckpt`` in ``folder``, else None.

    Args:
        folder: the run's checkpoint folder (``<run>/checkpoints``).
    """
    folder = Path(folder)
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    found = [path for path in folder.glob("*.ckpt") if path.is_file()]
    return max(found, key=lambda path: (path.stat().st_mtime_ns, path.name)) if found else None
