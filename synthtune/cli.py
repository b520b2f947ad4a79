"""``synthtune``: LightningCLI for fit / validate / test / predict, plus the data commands.

Run layout (all under ``--trainer.default_root_dir``, set by every config)::

    <run>/config.yaml                 the full fit config, reusable with ``--config``
    <run>/checkpoints/last.ckpt       trainable weights + optimizer + loop state (no backbone)
    <run>/lightning_logs/version_N/   TensorBoard / CSV logs
    <run>/samples.jsonl               what ``predict`` wrote (``--writer.output_path`` to change)
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Optional

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningCLI

from synthtune.callbacks.checkpoint import RunCheckpoint
from synthtune.callbacks.jsonl_writer import JsonlPredictionWriter
from synthtune.callbacks.progress import use_run_progress_bar
from synthtune.callbacks.run_config import RunConfigSaver
from synthtune.errors import SynthtuneError
from synthtune.preflight import SPECIAL_CKPT, preflight
from synthtune.usage_errors import SynthtuneArgumentParser

log = logging.getLogger("synthtune")

#: Subcommands that are plain functions over files, not Lightning runs: name -> (module, function).
DATA_COMMANDS = {
    "curate": ("synthtune.curation.commands", "curate_main"),
    "decontaminate": ("synthtune.curation.commands", "decontaminate_main"),
    "score": ("synthtune.curation.commands", "score_main"),
    "synalign": ("synthtune.synalign", "main"),
    "sweep": ("synthtune.sweep", "sweep_main"),
}


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
        preflight("fit", self.config[self.subcommand])

    def before_validate(self) -> None:
        preflight("validate", self.config[self.subcommand])

    def before_test(self) -> None:
        preflight("test", self.config[self.subcommand])

    def before_predict(self) -> None:
        preflight("predict", self.config[self.subcommand])

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        intended = config.get("synthtune_subcommand")
        if intended and self.subcommand and intended != self.subcommand:
            raise SynthtuneError(f"this config is for `synthtune {intended}`, not `synthtune {self.subcommand}`")
        use_run_progress_bar(config.trainer.get("callbacks"))
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
