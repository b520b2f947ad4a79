"""The Lightning side of ``synthtune``: LightningCLI for fit / validate / test / predict.

Run layout (all under ``--trainer.default_root_dir``, set by every config)::

    <run>/config.yaml                 the full fit config, reusable with ``--config`` from anywhere (the
                                      run paths in it are relative to it, so the folder can be moved)
    <run>/checkpoints/last.ckpt       trainable weights + optimizer + loop state (no backbone)
    <run>/lightning_logs/version_N/   TensorBoard / CSV logs
    <run>/samples.jsonl               what ``predict`` wrote (``--writer.output_path`` to change)
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml
from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningCLI

from synthtune.components.backbone_spec import backbone_name
from synthtune.callbacks.checkpoint import RunCheckpoint
from synthtune.checkpoint_io import use_atomic_checkpoints
from synthtune.callbacks.jsonl_writer import JsonlPredictionWriter
from synthtune.callbacks.progress import use_run_progress_bar
from synthtune.callbacks.run_config import RELATIVE_FLAG, RunConfigSaver, resolve_run_paths
from synthtune.errors import SynthtuneError
from synthtune.preflight import SPECIAL_CKPT, preflight
from synthtune.records import FILE_SUFFIXES
from synthtune.templates import verbatim_templates
from synthtune.usage_errors import SynthtuneArgumentParser

log = logging.getLogger("synthtune")

#: The LightningCLI subcommands, with the line ``synthtune --help`` shows for each.
LIGHTNING_COMMANDS = {
    "fit": "train a method's trainable parameters (prompts, weights) on the frozen backbone",
    "validate": "run the validation loop on a checkpoint",
    "test": "run the test loop on a checkpoint (e.g. accuracy of a tuned prompt)",
    "predict": "generate: write one JSONL row per sample (--writer.output_path)",
}


@dataclass(frozen=True)
class Request:
    """A Lightning run asked for from Python: what ``synthtune <subcommand> --config <file> ...`` asks for from
    the command line, as values instead of words.

    Args:
        subcommand: fit, validate, test or predict.
        configs: config files (or mappings) applied in order, as repeated ``--config`` options are; a file may
            pull in a base with ``config: base.yaml``.
        arguments: command-line words applied after the configs (the deprecated list form of pipeline
            ``overrides``, a sweep's words after ``--``).
        overrides: dotted keys (``trainer.max_steps``, ``model.init_args.lr``, ``ckpt_path``) and their values,
            applied last, as the task configs write them.
    """

    subcommand: str
    configs: tuple[Union[str, os.PathLike, Mapping[str, Any]], ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    arguments: tuple[str, ...] = ()

    def parse(self, parser) -> Namespace:
        """The whole config of the run (``subcommand`` and its section), parsed and checked by the subcommand's
        ``parser`` of :class:`SynthtuneCLI`; a mistake is one line (``SynthtuneError``)."""
        if self.subcommand not in LIGHTNING_COMMANDS:
            raise SynthtuneError(f"unknown Lightning subcommand {self.subcommand!r}; use one of "
                                 f"{', '.join(LIGHTNING_COMMANDS)}")
        for source in self.configs:
            if not isinstance(source, Mapping) and not Path(source).is_file():
                raise SynthtuneError(f"config file not found: {source}; check the path")
        if self.arguments:
            # The configs and the words in one parse, as on the command line: jsonargparse cannot apply words to a
            # namespace a parse already returned (a dataclass in a union, ``backbone: {name: ...}``, is there in
            # its final form, and a nested word re-validates it in a mixed one).
            words = [word for source in self.configs for word in ("--config", config_text(source))]
            config = parser.parse_args(verbatim_templates(words + list(self.arguments)))
        else:
            config = parser.get_defaults()
            for source in self.configs:
                given = copy.deepcopy(dict(source)) if isinstance(source, Mapping) else {"config": str(source)}
                config = parser.parse_object(given, namespace=config)
        if self.overrides:
            config = parser.parse_object(copy.deepcopy(dict(self.overrides)), namespace=config)  # it edits nested values
        return Namespace({"config": None, "subcommand": self.subcommand, self.subcommand: config})


def config_text(source: Union[str, os.PathLike, Mapping[str, Any]]) -> str:
    """What ``--config`` takes for one of a :class:`Request`'s configs: a file's path, or a mapping as JSON (a
    config given as text); a value that no config file can hold is one line."""
    if not isinstance(source, Mapping):
        return str(source)

    def refuse(value: Any) -> None:
        raise SynthtuneError(f"a config mapping holds {value!r}, which a config file cannot; give it as text, "
                             "a number, a list or a mapping")

    return json.dumps(dict(source), default=refuse)


class SynthtuneCLI(LightningCLI):
    """LightningCLI with a checkpoint section, a sample writer section and the backbone shared by
    the model and the data."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(JsonlPredictionWriter, "writer")
        # The one value the user sets once for both sides. What the model needs from the data is not
        # linked here: it exists only after the datamodule's setup, so it reaches the model through
        # synthtune.contract (DataInfo -> connect), for CLI and Python runs alike.
        parser.link_arguments("model.init_args.backbone", "data.init_args.backbone", compute_fn=backbone_name)
        parser.add_argument("--synthtune_subcommand", type=Optional[str], default=None,
                            help="the subcommand a config is written for (e.g. predict for generation-only "
                                 "methods); running it with another subcommand is refused")
        parser.add_argument(f"--{RELATIVE_FLAG}", type=bool, default=False,
                            help="set in a run's saved config.yaml: the run's own paths in it (default_root_dir, "
                                 "checkpoint.dirpath, writer.output_path, ckpt_path) are relative to that file's "
                                 "folder, so the run folder can be moved")

    def parse_arguments(self, parser, args) -> None:
        """Parse as LightningCLI does, with every template option's value taken verbatim (``synthtune.templates``);
        a :class:`Request` (a run asked for from Python) is parsed by the same parser without any command line."""
        if isinstance(args, Request):
            self.config = args.parse(self._parser(args.subcommand))
            return
        if isinstance(args, (dict, Namespace)):
            return super().parse_arguments(parser, args)
        self.config = parser.parse_args(verbatim_templates(list(sys.argv[1:] if args is None else args)))

    def _parse_ckpt_path(self) -> None:
        """Keep the user's config as given.

        Lightning would overwrite the model config with the hyperparameters stored in
        ``--ckpt_path``, which silently drops e.g. a new ``--model.init_args.temperature`` at predict
        time. synthtune instead checks the checkpoint's signature when it loads and refuses a
        mismatched one with one line (see ``SynthtuneModule.on_load_checkpoint``).
        """

    def instantiate_trainer(self, **kwargs: Any):
        """Lightning's trainer, saving checkpoints atomically in their own folder (``synthtune.checkpoint_io``)."""
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer

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
        config.trainer.callbacks = use_run_progress_bar(config.trainer.get("callbacks"),
                                                        config.trainer.get("enable_progress_bar"))
        resolve_run_paths(config)
        absolute_local_paths(config)
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


def _model_aliases() -> set[str]:
    """Names a backbone option takes that are aliases, never folders (bundled GGUF models, MiniLM)."""
    from synthtune.components.backbone import BUNDLED_MODELS
    from synthtune.components.encoders import MINILM_NAMES

    return {*BUNDLED_MODELS, *MINILM_NAMES}


def local_path(key: str, value: str, cwd: str | os.PathLike) -> str:
    """``value`` of config option ``key`` as the one absolute path of the local file or folder it names
    relative to ``cwd``, or ``value`` unchanged when it names none. A run's checkpoint signature, its
    saved ``config.yaml`` and its samples' ``params`` all record this form, so ``./tiny``, ``tiny`` and
    ``/abs/tiny`` are one backbone, and a run folder works from any working directory.

    A ``backbone`` option names a local folder whenever one exists there (as the loader reads it), unless
    it is a bundled alias; any other option only when it reads as a path (a separator, a data-file
    suffix): a split ``train`` stays a split even beside a folder ``train``. ``~`` is expanded, ``.``
    and ``..`` are folded, symbolic links are kept (``models/current`` stays that link).

    Args:
        key: the dotted option name (``model.init_args.backbone``).
        value: its value as given.
        cwd: the folder relative paths are relative to (the working directory).
    """
    if not value or "://" in value:
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return os.path.normpath(path)
    if key.rsplit(".", 1)[-1].endswith("backbone") or key.endswith(("backbone.name", "backbone.init_args.name")):
        if value in _model_aliases():
            return value
    elif not (os.sep in value or path.suffix.lower() in FILE_SUFFIXES):
        return value
    full = Path(cwd) / path
    return os.path.normpath(full) if full.exists() else value


def absolute_local_paths(config: Namespace) -> None:
    """Give every model/data option that names a local file or folder by a relative path (``./tiny``,
    ``tiny``, ``data/train.jsonl``) its one absolute form (:func:`local_path`), in place,
    before anything is built: the checkpoint signature, the saved ``config.yaml`` and the samples'
    ``params`` then agree, so ``predict --config <run>/config.yaml --ckpt_path last`` works from any
    working directory, as does ``fit --ckpt_path last`` with the relative path it was trained with."""
    cwd = os.getcwd()
    for key, value in list(config.items()):
        if key.startswith(("model.", "data.")) and isinstance(value, str):
            config[key] = local_path(key, value, cwd)


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


class ComposingCLI(SynthtuneCLI):
    """:class:`SynthtuneCLI` that stops once the config is parsed: nothing is seeded, built or run."""

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass

    def after_instantiate_classes(self) -> None:
        pass

    def _run_subcommand(self, subcommand: str) -> None:
        pass


class BuildingCLI(SynthtuneCLI):
    """:class:`SynthtuneCLI` that builds the model, data and trainer as a run would, then stops before running."""

    def _run_subcommand(self, subcommand: str) -> None:
        pass


def run_cli(args: Union[list[str], Request, None] = None, cli_class: type[SynthtuneCLI] = SynthtuneCLI) -> SynthtuneCLI:
    """Build and run the LightningCLI (``main`` passes the command line, :mod:`synthtune.api` a :class:`Request`)."""
    return cli_class(
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


def compose(args: Union[list[str], Request]) -> dict[str, Any]:
    """The config a run would run with, as ``--print_config`` shows it (base files and dotted keys applied, the
    run's paths as given), parsed by the CLI's own parser without running anything. ``args``: a :class:`Request`,
    or the words after ``synthtune`` (``["predict", "--config", "<run>/config.yaml"]``)."""
    try:
        cli = run_cli(args, cli_class=ComposingCLI)
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        shown = args.subcommand if isinstance(args, Request) else " ".join(args)
        raise SynthtuneError(f"`synthtune {shown}` is not a valid command line (see the lines above); "
                             "fix the config or its overrides") from None
    subcommand = cli.config["subcommand"]
    return yaml.safe_load(cli._parser(subcommand).dump(cli.config[subcommand], skip_unset=False))
