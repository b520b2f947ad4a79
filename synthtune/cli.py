"""``synthtune``: dispatches to the Lightning runs (fit / validate / test / predict, see
:mod:`synthtune.lightning_cli`) and to the data commands (:mod:`synthtune.commands`).

A user mistake in either ends as one line ``error: <what is wrong>; <how to fix>`` with exit status 2.
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings

from lightning.pytorch.utilities.exceptions import SIGTERMException

from synthtune.commands import COMMANDS, command_lines, run_command
from synthtune.lightning_cli import LIGHTNING_COMMANDS, run_cli, user_error

#: Subcommands that are plain functions over files, not Lightning runs.
DATA_COMMANDS = COMMANDS


def _quiet_known_noise() -> None:
    """Hide messages that are expected by design and would only confuse a user."""
    # The frozen backbone is in eval mode on purpose; validation is optional; advertising tips.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    warnings.filterwarnings("ignore", message=r".*Total length of `.*` across ranks is zero.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers which may be a bottleneck.*")
    # DawGen steps its optimizers by hand; a checkpoint holding the state after the step is what resume needs.
    warnings.filterwarnings("ignore", message=r".*Using ModelCheckpoint with manual optimization and every_n_train_steps.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.getMessage()).startswith("💡 Tip"))


def _configure_logging() -> None:
    _quiet_known_noise()
    logger = logging.getLogger("synthtune")
    if not logger.handlers:
        try:
            from rich.logging import RichHandler

            handler: logging.Handler = RichHandler(show_time=False, show_path=False, markup=False)
        except ImportError:  # pragma: no cover - rich is a dependency
            handler = logging.StreamHandler()
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


#: Exit status of a run stopped by SIGTERM (128 + the signal, as a shell reports a killed command).
SIGTERM_STATUS = 128 + signal.SIGTERM


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
    _configure_logging()
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
    except Exception as exc:  # noqa: BLE001 - only user errors are shortened; bugs keep their traceback
        cause = user_error(exc)
        if cause is None:
            raise
        _fail(str(cause))


if __name__ == "__main__":
    main()
