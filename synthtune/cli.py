"""``synthtune``: LightningCLI for fit / validate / test / predict, plus the data commands.

Run layout (all under ``--trainer.default_root_dir``, set by every config)::

    <run>/config.yaml                 the full fit config, reusable with ``--config``
    <run>/checkpoints/last.ckpt       trainable weights + optimizer + loop state (no backbone)
    <run>/lightning_logs/version_N/   TensorBoard / CSV logs
    <run>/samples.jsonl               what ``predict`` wrote (``--writer.output_path`` to change)
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import NoReturn, Optional

from jsonargparse import ArgumentParser, Namespace

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from synthtune.callbacks.checkpoint import RunCheckpoint
from synthtune.callbacks.jsonl_writer import JsonlPredictionWriter
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes, ensure_writable_dir
from synthtune.records import FILE_SUFFIXES

log = logging.getLogger("synthtune")

#: Subcommands that are plain functions over files, not Lightning runs: name -> (module, function).
DATA_COMMANDS = {
    "curate": ("synthtune.curation.commands", "curate_main"),
    "decontaminate": ("synthtune.curation.commands", "decontaminate_main"),
    "score": ("synthtune.curation.commands", "score_main"),
    "synalign": ("synthtune.synalign", "main"),
    "sweep": ("synthtune.sweep", "sweep_main"),
}
SPECIAL_CKPT = {"last", "best", "hpc", "registry"}


def absolute_paths(config: Namespace, cwd: Path) -> Namespace:
    """A copy of a run's ``config`` where the run folder, the checkpoint folder and every model/data
    argument that names an existing file or folder by a relative path (``data/train.jsonl``) are
    absolute, so the saved config works from any working directory."""
    config = config.clone()
    for key in ("trainer.default_root_dir", "checkpoint.dirpath"):
        if config.get(key) is not None:
            config[key] = str((cwd / Path(config[key]).expanduser()).resolve())
    for key, value in config.items():
        if not key.startswith(("data.", "model.")) or not isinstance(value, str):
            continue
        path = Path(value).expanduser()
        # only what reads as a path: "train" (a split) or "smollm2-135m" (a backbone name) stay as they are
        looks_like_path = os.sep in value or path.suffix.lower() in FILE_SUFFIXES
        if looks_like_path and not path.is_absolute() and (cwd / path).exists():
            config[key] = str((cwd / path).resolve())
    return config


class RunConfigSaver(SaveConfigCallback):
    """Writes the fit config to ``<default_root_dir>/config.yaml`` (atomically, replacing an older
    one), so ``synthtune predict --config <run>/config.yaml`` reproduces the run from any folder
    (paths in it are absolute). It is written only once ``--ckpt_path`` has been loaded and checked,
    so a refused checkpoint leaves the run folder untouched."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Nothing is written at setup: the checkpoint has not been checked yet."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.strategy.restore_checkpoint_after_setup:  # the checkpoint loaded before this hook
            self._save(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer)  # strategies that restore after setup (FSDP, DeepSpeed) have loaded it now

    def _save(self, trainer: Trainer) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / self.config_filename
            text = self.parser.dump(absolute_paths(self.config, Path.cwd()), skip_none=False)
            atomic_write_bytes(path, text.encode("utf-8"))
            log.info("config saved to %s", path)
        self.already_saved = True


class SynthtuneArgumentParser(LightningArgumentParser):
    """The CLI's parser: a bad option is one line (``error: model.init_args: unknown option
    'prompt_lenght' (did you mean 'prompt_length'?); ...``) instead of the whole usage text."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse trying alternatives internally: keep its behaviour
            super().error(message, ex)
        raise SynthtuneError(usage_error_line(message, getattr(ex, "subcommand_parser", None) or self))


class SynthtuneCLI(LightningCLI):
    """LightningCLI with a checkpoint section, a sample writer section and the backbone shared by
    the model and the data."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(JsonlPredictionWriter, "writer")
        parser.link_arguments("model.init_args.backbone", "data.init_args.backbone")
        parser.add_argument("--synthtune_subcommand", type=Optional[str], default=None,
                            help="the subcommand a config is written for (e.g. predict for generation-only "
                                 "methods); running it with another subcommand is refused")

    def _parse_ckpt_path(self) -> None:
        """Keep the user's config as given.

        Lightning would overwrite the model config with the hyperparameters stored in
        ``--ckpt_path``, which silently drops e.g. a new ``--model.init_args.temperature`` at predict
        time. synthtune instead checks the checkpoint's signature when it loads and refuses a
        mismatched one with one line (see ``FrozenBackboneModule.on_load_checkpoint``).
        """

    def before_fit(self) -> None:
        """Check, before any work starts, that the run folder can be written and the checkpoint read."""
        config = self.config[self.subcommand]
        ensure_writable_dir(self.trainer.default_root_dir, "the run (config, checkpoints, logs)",
                            "pass --trainer.default_root_dir in a folder you can write to")
        ensure_writable_dir(config.checkpoint.dirpath, "checkpoints",
                            "pass --checkpoint.dirpath in a folder you can write to")
        self._check_checkpoint(config)

    def before_predict(self) -> None:
        self._check_checkpoint(self.config[self.subcommand])

    def before_test(self) -> None:
        self._check_checkpoint(self.config[self.subcommand])

    def before_validate(self) -> None:
        self._check_checkpoint(self.config[self.subcommand])

    def _check_checkpoint(self, config: Namespace) -> None:
        ckpt = config.get("ckpt_path")
        if ckpt == "last":
            ckpt = Path(config.checkpoint.dirpath) / "last.ckpt"  # where RunCheckpoint keeps it
            if not ckpt.is_file():
                return  # Lightning starts from scratch with a warning, as documented
        elif not ckpt or ckpt in SPECIAL_CKPT:
            return
        check_checkpoint_file(Path(ckpt))

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        intended = config.get("synthtune_subcommand")
        if intended and self.subcommand and intended != self.subcommand:
            raise SynthtuneError(f"this config is for `synthtune {intended}`, not `synthtune {self.subcommand}`")
        for callback in config.trainer.get("callbacks") or []:
            if getattr(callback, "class_path", None) == "lightning.pytorch.callbacks.RichProgressBar":
                # the same bar and arguments, with right counts under max_steps and on resume
                callback.class_path = "synthtune.callbacks.RunProgressBar"
        root = config.trainer.default_root_dir or os.getcwd()
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(Path(root) / "checkpoints")
        ckpt = config.get("ckpt_path")
        if ckpt and ckpt not in SPECIAL_CKPT and not Path(ckpt).is_file():
            raise SynthtuneError(f"checkpoint not found: {ckpt}; pass an existing .ckpt file, or --ckpt_path last "
                                 f"to resume from {config.checkpoint.dirpath}")
        if self.subcommand == "predict" and config.get("return_predictions") is None:
            config.return_predictions = False  # the writer owns the rows; don't also keep them all in memory
        if self.subcommand == "predict" and not ckpt and intended != "predict":
            log.warning("predicting without --ckpt_path: samples come from an untrained prompt")


def _quiet_known_noise() -> None:
    """Hide messages that are expected by design and would only confuse a user."""
    # The frozen backbone is in eval mode on purpose; validation is optional; advertising tips.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    warnings.filterwarnings("ignore", message=r".*Total length of `.*` across ranks is zero.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers which may be a bottleneck.*")
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


def user_error(exc: BaseException) -> SynthtuneError | None:
    """The SynthtuneError behind ``exc``, if any (jsonargparse wraps errors raised in ``__init__``)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, SynthtuneError):
            return exc
        if isinstance(exc, MisconfigurationException):  # Lightning's word for a bad trainer config
            return SynthtuneError(str(exc).splitlines()[0])
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


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


def _option_names(parser: ArgumentParser, section: str) -> list[str]:
    """The option names a parser accepts directly under ``section`` (``trainer`` -> ``max_steps``, ...)."""
    prefix = f"{section}." if section else ""
    names = {action.dest[len(prefix):] for action in parser._actions if action.dest.startswith(prefix)}
    return sorted(name for name in names if name and "." not in name)


def _init_arg_names(class_path: str) -> list[str]:
    """The ``__init__`` argument names of the class ``class_path`` (for an init_args typo)."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls.__init__).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _innermost_problem(message: str) -> str:
    """The part of a jsonargparse message that says what is wrong, on one line: for a value that
    fails a ``class_path`` (``model``), the lines nested under "Problem with given class_path"."""
    lines = message.splitlines()
    key = re.search(r'Parser key "([\w.]+)"', message)
    for i, line in enumerate(lines):
        if "Problem with given class_path" in line and key:
            depth = len(line) - len(line.lstrip())
            inner = [x.strip() for x in lines[i + 1:] if x.strip() and len(x) - len(x.lstrip()) > depth]
            return f"{key.group(1)}.init_args: " + " ".join(inner)
    return " ".join(message.split())


def usage_error_line(message: str, parser: ArgumentParser) -> str:
    """One line for a jsonargparse usage error: an unknown option names the closest known one."""
    subcommand = parser.prog.split()[-1] if parser.prog else ""
    how = f"run `synthtune {subcommand} --help` for the options" if subcommand else "run `synthtune --help`"
    unknown = re.search(r"Problem with given class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message)
    section_key = re.search(r'Parser key "([\w.]+)"', message)
    if unknown and section_key:
        section, option = f"{section_key.group(1)}.init_args", unknown.group(2)
        candidates = _init_arg_names(unknown.group(1))
    else:
        unknown = re.search(r"does not accept option '([\w.]+)'|unrecognized arguments: --([\w.]+)", message)
        if not unknown:
            return f"{_innermost_problem(message)}; {how}"
        section, _, option = (unknown.group(1) or unknown.group(2)).rpartition(".")
        candidates = _option_names(parser, section)
    close = difflib.get_close_matches(option, candidates, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{section or subcommand}: unknown option {option!r}{hint}; fix the key in the config or command line, or {how}"


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run_cli(args: list[str] | None = None) -> SynthtuneCLI:
    """Build and run the LightningCLI (used by ``main`` and by tests)."""
    return SynthtuneCLI(
        LightningModule,
        None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        parser_class=SynthtuneArgumentParser,
        save_config_kwargs={"overwrite": True},
        args=args,
        auto_configure_optimizers=False,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``synthtune`` console script."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    try:
        if argv and argv[0] in DATA_COMMANDS:
            import importlib

            module_name, function = DATA_COMMANDS[argv[0]]
            code = getattr(importlib.import_module(module_name), function)(argv[1:])
            sys.exit(code or 0)
        run_cli(None if from_command_line else argv)
    except Exception as exc:  # noqa: BLE001 - only user errors are shortened; bugs keep their traceback
        cause = user_error(exc)
        if cause is None:
            raise
        _fail(str(cause))


if __name__ == "__main__":
    main()
