"""Lightning runs from Python: ``fit``, ``validate``, ``test`` and ``predict`` on a config plus dotted-key
overrides, each parsed and run by the same :class:`~synthtune.lightning_cli.SynthtuneCLI` as ``synthtune fit``
(its checks, run folder, checkpoints, progress bar and hidden warnings), returning a :class:`Run`.

``fit("configs/softsrv/demo.yaml", {"trainer.max_steps": 20})`` is ``synthtune fit --config
configs/softsrv/demo.yaml --trainer.max_steps 20``; keyword arguments are more keys
(``fit(config, ckpt_path="last")`` resumes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from synthtune.api.quiet import quiet_known_noise
from synthtune.lightning_cli import BuildingCLI, Request, compose as compose_request, run_cli

#: A config: a YAML file (which may pull in a base with ``config: base.yaml``), a mapping, a :class:`Run` (its
#: saved ``config.yaml``) or several of them, applied in order.
Config = Union[str, os.PathLike, Mapping[str, Any], "Run", Sequence[Union[str, os.PathLike, Mapping[str, Any]]]]


@dataclass(frozen=True)
class Run:
    """A Lightning run's folder and what it ended with.

    Args:
        folder: the run folder (``trainer.default_root_dir``).
        config: the full config it saved (``<folder>/config.yaml``; ``--config`` it to predict or resume).
        checkpoint: the checkpoint to resume or predict from (``<checkpoint.dirpath>/last.ckpt``).
        metrics: the trainer's last logged metrics (``trainer.callback_metrics``), e.g. ``test/acc``.
        rows: the JSONL file a predict wrote, or None.
    """

    folder: Path
    config: Path
    checkpoint: Path
    metrics: dict[str, float] = field(default_factory=dict)
    rows: Optional[Path] = None

    @classmethod
    def open(cls, folder: Union[str, os.PathLike]) -> Run:
        """The run that a fit wrote into ``folder`` (its ``config.yaml`` and ``checkpoints/last.ckpt``)."""
        folder = Path(folder)
        return cls(folder=folder, config=folder / "config.yaml", checkpoint=folder / "checkpoints" / "last.ckpt")


def request(subcommand: str, config: Config, overrides: Optional[Mapping[str, Any]] = None,
            arguments: Sequence[str] = (), **more: Any) -> Request:
    """What :func:`run` and :func:`compose` parse: ``config``, then ``arguments`` (command-line words; only for
    settings written in that older form), then ``overrides`` and ``more`` (dotted keys)."""
    if isinstance(config, Run):
        configs: tuple = (config.config,)
    elif isinstance(config, (str, os.PathLike, Mapping)):
        configs = (config,)
    else:
        configs = tuple(config)
    return Request(subcommand, configs, {**(overrides or {}), **more}, tuple(str(a) for a in arguments))


def compose(subcommand: str, config: Config, overrides: Optional[Mapping[str, Any]] = None, **more: Any) -> dict[str, Any]:
    """The config ``subcommand`` would run with, as ``synthtune <subcommand> --print_config`` shows it (base files
    and overrides applied); nothing is built or run."""
    return compose_request(request(subcommand, config, overrides, **more))


def instantiate(subcommand: str, config: Config, overrides: Optional[Mapping[str, Any]] = None,
                **more: Any) -> tuple[Any, Any]:
    """The model and the datamodule ``subcommand`` would run with, built as the CLI builds them (the backbone
    linked from the model to the data, local paths made absolute); nothing is run."""
    quiet_known_noise()
    cli = run_cli(request(subcommand, config, overrides, **more), cli_class=BuildingCLI)
    return cli.model, cli.datamodule


def run(subcommand: str, config: Config, overrides: Optional[Mapping[str, Any]] = None, arguments: Sequence[str] = (),
        **more: Any) -> Run:
    """Run ``synthtune <subcommand>`` on ``config`` and dotted-key ``overrides``; returns the run's folder, files
    and metrics. A user mistake raises :class:`~synthtune.errors.SynthtuneError` with one line."""
    return execute(request(subcommand, config, overrides, arguments, **more))


def execute(asked: Request) -> Run:
    """Run a :class:`~synthtune.lightning_cli.Request` (what :func:`run` does after building it)."""
    from synthtune.callbacks.jsonl_writer import JsonlPredictionWriter

    quiet_known_noise()
    cli = run_cli(asked)
    subcommand = asked.subcommand
    settings = cli.config[subcommand]
    folder = Path(cli.trainer.default_root_dir)
    rows = next((Path(cb.output_file) for cb in cli.trainer.callbacks
                 if isinstance(cb, JsonlPredictionWriter) and getattr(cb, "output_file", None)), None)
    return Run(folder=folder, config=folder / "config.yaml", checkpoint=Path(settings.checkpoint.dirpath) / "last.ckpt",
               metrics={key: float(value) for key, value in cli.trainer.callback_metrics.items()},
               rows=rows if subcommand == "predict" else None)


def fit(config: Config, overrides: Optional[Mapping[str, Any]] = None, **more: Any) -> Run:
    """``synthtune fit``: train; ``ckpt_path="last"`` resumes a killed fit with its optimizer and loop state."""
    return run("fit", config, overrides, **more)


def validate(config: Config, overrides: Optional[Mapping[str, Any]] = None, **more: Any) -> Run:
    """``synthtune validate``: the validation loop (``ckpt_path`` picks the weights)."""
    return run("validate", config, overrides, **more)


def test(config: Config, overrides: Optional[Mapping[str, Any]] = None, **more: Any) -> Run:
    """``synthtune test``: the test loop; its metrics (``test/acc``, ...) are in ``Run.metrics``."""
    return run("test", config, overrides, **more)


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into a test module


def predict(config: Config, overrides: Optional[Mapping[str, Any]] = None, **more: Any) -> Run:
    """``synthtune predict``: write one JSONL row per sample (``Run.rows``); a killed predict resumes."""
    return run("predict", config, overrides, **more)
