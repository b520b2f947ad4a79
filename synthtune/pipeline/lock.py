"""One pipeline run per root at a time: an exclusive, non-blocking ``flock`` on ``<root>/.pipeline.lock``.

The operating system drops the lock when the process ends, however it ends, so a killed run never leaves a
stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Optional

from synthtune.errors import SynthtuneError

LOCK_FILE = ".pipeline.lock"


class RootLock:
    """Context manager holding the pipeline lock of ``root``; a second holder is refused in one line.

    Args:
        root: the pipeline's root folder (created if missing).
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_FILE
        self._handle: Optional[IO[str]] = None

    def __enter__(self) -> "RootLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SynthtuneError(f"another pipeline run ({holder}) holds {self.path}; wait for it to finish, "
                                 "or give this run another root") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
