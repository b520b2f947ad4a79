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
        # write-then-rename: a SIGKILL between truncate and write must not leave an empty file for the test to read
        tmp = Path(f"{self.path}.tmp")
        tmp.write_text(str(trainer.global_step))
        os.replace(tmp, self.path)


# ------------------------------------------------------------------ real filesystems: a small tmpfs, a full disk
def mount_tmpfs(folder, size: str = "8m", read_only: bool = False) -> bool:
    """Mount a tmpfs of ``size`` on ``folder`` (read-only with ``read_only``); False where mounting is not
    allowed (not root, no CAP_SYS_ADMIN), so a test can fall back to ``ulimit -f`` or skip."""
    import subprocess

    Path(folder).mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def remount_read_only(folder) -> None:
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


def unmount(folder) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder) -> Path:
    """Write ``<folder>/filler`` until the filesystem is full (ENOSPC); returns it (delete it to free the disk)."""
    filler = Path(folder) / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 16, 512, 1):  # big chunks, then what is left is smaller than one
            while True:
                try:
                    os.write(fd, bytes(size))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


class FillDisk(Callback):
    """Fills the filesystem of ``folder`` (:func:`fill`) at one point of a run: ``hook`` is a Lightning
    callback hook name (``on_fit_start``, ``on_train_batch_end``, ``on_predict_epoch_end``, ...); with
    ``batch``, only at that batch index. Another process filling the disk mid-run, on a real filesystem."""

    def __init__(self, folder: str, hook: str, batch: int = -1) -> None:
        self.folder, self.hook, self.batch = folder, hook, batch
        self.done = False

    def _maybe(self, hook: str, batch_idx: int = -1) -> None:
        if not self.done and hook == self.hook and self.batch in (-1, batch_idx):
            fill(self.folder)
            self.done = True

    def on_fit_start(self, trainer, pl_module) -> None:
        self._maybe("on_fit_start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe("on_train_batch_end", batch_idx)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._maybe("on_predict_batch_start", batch_idx)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._maybe("on_predict_epoch_end")
