"""``generate``: samples of a trained run (or of a generation-only config) as a ``datasets.Dataset``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from synthtune.api.runs import Run, compose, predict
from synthtune.records import read_jsonl

#: The model option holding the sampling settings, when the model groups them (``model.init_args.sampling``).
SAMPLING = "sampling"


def sampling_keys(config: Any, sampling: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of the sampling settings ``sampling`` (``temperature=0.9``) for the model ``config`` composes
    to: ``model.init_args.sampling.<name>`` where the model groups them, ``model.init_args.<name>`` otherwise; a
    key already dotted is kept as given."""
    model = (compose("predict", config).get("model") or {}).get("init_args") or {}
    prefix = f"model.init_args.{SAMPLING}." if isinstance(model.get(SAMPLING), dict) else "model.init_args."
    return {key if "." in key else prefix + key: value for key, value in sampling.items()}


def generate(run: Union[Run, str, os.PathLike], n: Optional[int] = None, output: Optional[Union[str, os.PathLike]] = None,
             overwrite: bool = False, **sampling: Any) -> "datasets.Dataset":  # noqa: F821
    """Generate ``n`` samples and return them as a ``datasets.Dataset`` (one row per sample: ``id``, ``text``,
    ``params``, ...), as ``synthtune predict`` writes them.

    Args:
        run: a fitted :class:`Run` or its folder (predicts from its ``config.yaml`` and last checkpoint), or the
            config file of a generation-only method (template generation, SynAlign generation).
        n: how many samples (``data.init_args.num_samples``); default: the config's.
        output: the JSONL file (default ``<run>/samples.jsonl``); a killed generation resumes into it.
        overwrite: start ``output`` over instead of resuming it (``writer.overwrite``).
        **sampling: sampling settings (``temperature=0.9``, ``top_p=0.95``, ``max_new_tokens=128``) or any other
            dotted key (``{"data.init_args.predict_batch_size": 16}``).
    """
    from datasets import Dataset

    if not isinstance(run, Run) and Path(run).is_dir():
        run = Run.open(run)
    config = run.config if isinstance(run, Run) else run
    overrides = sampling_keys(config, sampling)
    if isinstance(run, Run):
        overrides["ckpt_path"] = str(run.checkpoint)
    if n is not None:
        overrides["data.init_args.num_samples"] = n
    if output is not None:
        overrides["writer.output_path"] = str(output)
    if overwrite:
        overrides["writer.overwrite"] = True
    done = predict(config, overrides)
    return Dataset.from_list(read_jsonl(done.rows))
