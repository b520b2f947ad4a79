"""Where synthtune keeps caches, and how it writes files so that a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import filelock

from synthtune.errors import SynthtuneError


#: What a cache that cannot be written is told to do.
CACHE_FIX = "set SYNTHTUNE_CACHE to a folder you can write to (or pass --no_cache where a command has it)"


def cache_root() -> Path:
    """``$SYNTHTUNE_CACHE`` (default ``~/.cache/synthtune``)."""
    return Path(os.environ.get("SYNTHTUNE_CACHE", Path.home() / ".cache" / "synthtune")).expanduser()


def cache_dir(*parts: str) -> Path:
    """``$SYNTHTUNE_CACHE/<parts>`` (default ``~/.cache/synthtune``), created on demand; one line naming the
    folder and :data:`CACHE_FIX` when it cannot be created (a read-only disk, a file in the way)."""
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SynthtuneError(f"cannot create the cache folder {path} ({exc.strerror or exc}); {CACHE_FIX}") from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def clean_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed :func:`atomic_write_bytes` left next to ``path``
    (their writer process no longer exists); returns what was deleted."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing (binary); when the block ends without an error,
    flush and fsync it and ``os.replace`` it onto ``path``, then fsync the folder. A reader sees the old
    file or the new one, never half of one, whatever filesystem ``$TMPDIR`` is on: the temporary file
    is in ``path``'s own folder, so the replace is a rename, never a copy. On an error the temporary
    file is deleted and ``path`` is as it was.

    The file gets the usual permissions (0666 minus the umask), not ``mkstemp``'s 0600. The temporary
    file is named ``.<name>.<pid>.<random>.tmp``; ones left by a killed process are deleted here.

    A symbolic link ``path`` is written through: its target gets the new file and the link stays a link.
    An ``OSError`` (a full disk, a file size limit, a read-only folder) names ``path`` as its ``filename``,
    so the CLI's one line says which file could not be written."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temp_files(path)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise with_filename(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        named = with_filename(exc, path)
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def with_filename(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` with ``path`` as its filename when it names none (``write``/``fsync`` errors do not), so the
    CLI's one line says which file could not be written."""
    if exc.filename is not None or not exc.errno:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a power cut after it still finds the new file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems do not fsync folders; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    with atomic_write(path) as fh:
        fh.write(data)


#: Bytes the write check of a folder writes (and fsyncs) before any work: room for a first shard, a config, a
#: report. An empty probe file passes on a full disk (it needs an inode, no data block); this one does not.
FIRST_WRITE_BYTES = 1 << 16


def ensure_writable_dir(path: str | os.PathLike, what: str, fix: str, room: int = FIRST_WRITE_BYTES) -> Path:
    """Create folder ``path`` if needed and check, before any work starts, that a file of ``room`` bytes
    can be written in it (so a full disk or a file size limit fails here, not after the work); one line
    naming ``what`` it is for and the ``fix`` otherwise.

    Args:
        path: the folder.
        what: what will be written there (for the message).
        fix: what to do instead (for the message).
        room: bytes to write into the probe file (0: only create it).
    """
    path = Path(path).expanduser()
    probe = path / f".synthtune-write-test.{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as fh:
            fh.write(bytes(room))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise SynthtuneError(f"cannot write {what} to {path} ({exc.strerror or exc}); {fix}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return path


class OutputLock:
    """An exclusive lock on one output file, held by one process at a time.

    ``acquire`` locks ``<output>.lock`` without waiting, through ``filelock``'s native primitive
    (``flock`` on Unix, ``LockFileEx`` on Windows), and writes the holder (``pid N on host``) into it; a
    second process gets a :class:`SynthtuneError` naming the holder. The operating system drops the lock
    when the holder exits, even on ``kill -9``, so a stale lock file never blocks a later run.

    Args:
        output: the file (or folder) the lock protects.
        lock_path: the lock file; default ``<output>.lock``.
        fix: what the refusal tells a second process to do instead.
    """

    def __init__(self, output: str | os.PathLike, lock_path: str | os.PathLike | None = None,
                 fix: str = "pass another output path") -> None:
        self.output = Path(output)
        self.path = Path(lock_path) if lock_path is not None else self.output.with_name(self.output.name + ".lock")
        self.fix = fix
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise with_filename(exc, self.path) from None
        if not filelock.lock_descriptor(fd, blocking=False):
            holder = _read_holder(fd) or "another process"
            os.close(fd)
            raise SynthtuneError(self.refusal(holder)) from None
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        except OSError as exc:  # a full disk: the lock holds without the holder's name in it
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                os.close(fd)
                raise with_filename(exc, self.path) from None
        self._fd = fd

    def refusal(self, holder: str) -> str:
        """The one line a second process gets while ``holder`` (``pid N on host``) holds the lock."""
        return f"{self.output} is being written by {holder} (lock {self.path}); wait for it to finish, or {self.fix}"

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            filelock.unlock_descriptor(self._fd)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    """The holder line a lock file's owner wrote (empty if none): read at offset 0, portably (no ``pread``
    on Windows)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 256).decode("utf-8", "replace").strip()
    except OSError:  # Windows: the holder's lock covers the byte it wrote
        return ""


def run_folder_lock(root: str | os.PathLike) -> OutputLock:
    """The lock of a fit's run folder (``<root>/.fit.lock``): one fit per run folder at a time."""
    root = Path(root)
    return OutputLock(root, root / ".fit.lock", fix="pass another --trainer.default_root_dir")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` as JSON lines atomically; returns the number of rows written."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    atomic_write_bytes(path, ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    return len(lines)


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON (a report, stats) atomically; returns the path."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return Path(path)


def atomic_write_png(figure, path: str | os.PathLike) -> Path:
    """Render a matplotlib ``figure`` to PNG and write it atomically; returns the path."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
