"""Fault injection for checkpoint saves: a kill or a full disk while a checkpoint's bytes reach its folder.

``install(folder, fault)`` makes every write of checkpoint bytes into ``folder`` stop after 100 bytes,
with ``fault`` ``"kill"`` (SIGKILL, as ``kill -9`` or the OOM killer) or ``"enospc"`` (a full disk). It
covers both ways a checkpoint reaches the folder: ``torch.save`` into a file there, and the copy a move
from ``$TMPDIR`` falls back to across filesystems (``os.sendfile``). Renames between two folders fail
with ``EXDEV``, as they do when ``$TMPDIR`` is on another filesystem (a tmpfs ``/tmp``), whatever the
machine running the test has.
"""

import errno
import io
import os
import signal
from pathlib import Path

BYTES_BEFORE_FAULT = 100


def install(folder, fault: str, monkeypatch=None) -> None:
    import torch

    folder = Path(folder).resolve()

    def fail():
        if fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def in_folder(fd: int) -> bool:
        return Path(os.readlink(f"/proc/self/fd/{fd}")).parent == folder

    real_sendfile, real_save, real_rename = os.sendfile, torch.save, os.rename

    def sendfile(out_fd, in_fd, offset, count):
        if not in_folder(out_fd):
            return real_sendfile(out_fd, in_fd, offset, count)
        real_sendfile(out_fd, in_fd, offset, min(count, BYTES_BEFORE_FAULT))
        fail()

    def save(obj, f, *args, **kwargs):
        if isinstance(f, io.BytesIO) or not hasattr(f, "fileno") or not in_folder(f.fileno()):
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[:BYTES_BEFORE_FAULT])
        f.flush()
        fail()

    def rename(src, dst, *args, **kwargs):
        if Path(src).resolve().parent != Path(dst).resolve().parent:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src), None, str(dst))
        return real_rename(src, dst, *args, **kwargs)

    for owner, name, fake in [(os, "sendfile", sendfile), (torch, "save", save), (os, "rename", rename)]:
        if monkeypatch is not None:
            monkeypatch.setattr(owner, name, fake)
        else:
            setattr(owner, name, fake)


try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover
    Callback = object


class StepFile(Callback):
    """Writes the global step to ``path`` after every training batch, so a test knows when to signal a run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        Path(self.path).write_text(str(trainer.global_step))
