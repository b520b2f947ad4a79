"""``synthtune``: dispatches to the Lightning runs (fit / validate / test / predict, see
:mod:`synthtune.lightning_cli`) and to the data commands (:mod:`synthtune.commands`).

A user mistake in either ends as one line ``error: <what is wrong>; <how to fix>`` with exit status 2.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
import sys

from lightning.pytorch.utilities.exceptions import SIGTERMException

from synthtune.api.quiet import configure_logging
from synthtune.commands import COMMANDS, command_lines, run_command
from synthtune.lightning_cli import LIGHTNING_COMMANDS, run_cli, user_error
from synthtune.paths import CACHE_FIX, cache_root

#: Subcommands that are plain functions over files, not Lightning runs.
DATA_COMMANDS = COMMANDS


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


#: Exit status of a run stopped by SIGTERM (128 + the signal, as a shell reports a killed command).
SIGTERM_STATUS = 128 + signal.SIGTERM
#: Exit status of a data command stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED_STATUS = 128 + signal.SIGINT
#: OS errors a user fixes (a full disk, a file size limit, a quota, a read-only disk or folder), and the fix.
_SPACE = "free some space (or write to another disk)"
OS_ERROR_FIXES = {errno.ENOSPC: _SPACE, errno.EDQUOT: _SPACE,
                  errno.EFBIG: "raise the file size limit (ulimit -f) or write to another disk",
                  errno.EROFS: "write to a disk that is not read-only",
                  errno.EACCES: "check its permissions or use another path",
                  errno.EPERM: "check its permissions or use another path"}


def os_error_line(exc: BaseException) -> str | None:
    """One line for an OS error behind ``exc`` that the user fixes (:data:`OS_ERROR_FIXES`), wherever it
    happened (config, checkpoint, shard, merge, report, cache); None for any other error. Files are written
    atomically and shards keep finished batches, so the line can say that nothing written before is lost."""
    found, seen = [], set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in OS_ERROR_FIXES:
            found.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    if not found:
        return None
    # the one that names its file (a cleanup that failed the same way while handling it often names none)
    error = next((e for e in found if e.filename), found[0])
    fix = OS_ERROR_FIXES[error.errno]
    if error.filename and _under(error.filename, cache_root()):
        fix = CACHE_FIX
    return (f"{error.filename or 'a file'}: {error.strerror or os.strerror(error.errno)}; files written before are "
            f"unchanged: {fix}, then run the same command again")


def _under(path: str, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(folder)))


def _stopped(argv: list[str], exc: SIGTERMException) -> None:
    """A run stopped by SIGTERM: one line saying what was kept and how to resume; a non-zero exit, so
    ``fit && predict`` does not go on with a half-trained run."""
    command = argv[0] if argv else ""
    fix = {"fit": "run the same command with --ckpt_path last to resume",
           "predict": "run the same command again to generate the rest"}.get(command, "run the same command again to resume")
    kept = getattr(exc, "synthtune_kept", None)
    print(f"stopped by SIGTERM{f': {kept}' if kept else ''}; {fix}", file=sys.stderr)
    sys.exit(SIGTERM_STATUS)


def usage() -> str:
    """What ``synthtune --help`` prints: every command, Lightning runs and data commands."""
    width = max(len(name) for name, _ in [*LIGHTNING_COMMANDS.items(), *command_lines()]) + 2
    lines = ["usage: synthtune COMMAND [--config FILE.yaml] [options]   (synthtune COMMAND --help for its options)",
             "", "Lightning runs (model, data and trainer from --config):"]
    lines += [f"  {name:<{width}}{text}" for name, text in LIGHTNING_COMMANDS.items()]
    lines += ["", "data commands (each also takes --config and --print_config):"]
    lines += [f"  {name:<{width}}{text}" for name, text in command_lines()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``synthtune`` console script."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    try:
        if argv[:1] in (["-h"], ["--help"]):
            print(usage())
            return
        if argv and argv[0] in DATA_COMMANDS:
            run_command(argv[0], argv[1:])
            return
        run_cli(None if from_command_line else argv)
    except SIGTERMException as exc:  # Lightning's stop on SIGTERM, a SystemExit with status 0
        _stopped(argv, exc)
    except KeyboardInterrupt:  # Ctrl-C in a data command (Lightning runs handle their own)
        print("interrupted (Ctrl-C): every output is written atomically, so each is its old version or absent, "
              "never half-written; run the same command again", file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
    except Exception as exc:  # noqa: BLE001 - only user errors are shortened; bugs keep their traceback
        cause = user_error(exc)
        if cause is None:
            cause = os_error_line(exc)
        if cause is None:
            raise
        _fail(str(cause))


if __name__ == "__main__":
    main()
