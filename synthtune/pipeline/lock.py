"""One pipeline run per root at a time: the same non-blocking OS lock as every output
(:class:`synthtune.paths.OutputLock`), on ``<root>/.pipeline.lock``.

The operating system drops the lock when the process ends, however it ends, so a killed run never leaves a
stale lock behind.
"""

from __future__ import annotations

from pathlib import Path

from synthtune.paths import OutputLock

LOCK_FILE = ".pipeline.lock"


class RootLock(OutputLock):
    """Context manager holding the pipeline lock of ``root`` (created if missing); a second holder is refused
    in one line.

    Args:
        root: the pipeline's root folder.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root, Path(root) / LOCK_FILE)

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().acquire()

    def refusal(self, holder: str) -> str:
        return f"another pipeline run ({holder}) holds {self.path}; wait for it to finish, or give this run another root"
