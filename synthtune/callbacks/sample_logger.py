"""Show what the generator produces while it trains.

Every ``every_n_steps`` optimizer steps the callback asks the module for a few texts
(``pl_module.sample_texts(num)``), prints them on rank 0 and records them: as a TensorBoard text
summary under the tag ``samples``, or, for every other logger, appended to ``<log_dir>/samples.log``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from rich.console import Console
from rich.text import Text

from synthtune.errors import SynthtuneError

log = logging.getLogger(__name__)

SAMPLES_LOG = "samples.log"


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, with an ellipsis when something was cut."""
    return text if len(text) <= max_chars else text[:max_chars] + "…"


def format_markdown(texts: Sequence[str], step: int) -> str:
    """Texts as Markdown for TensorBoard's text tab; code blocks keep line breaks and indentation."""
    parts = [f"**step {step}**"]
    for number, text in enumerate(texts, start=1):
        fence = "````" if "```" in text else "```"
        parts.append(f"sample {number}:\n\n{fence}\n{text}\n{fence}")
    return "\n\n".join(parts)


def format_plain(texts: Sequence[str], step: int) -> str:
    """Texts as a plain-text block for ``samples.log``."""
    lines = [f"=== step {step} ==="]
    for number, text in enumerate(texts, start=1):
        lines.append(f"--- sample {number} ---")
        lines.append(text)
    return "\n".join(lines) + "\n\n"


class SampleLogger(Callback):
    """Print and log a few generated texts every ``every_n_steps`` training steps.

    The LightningModule must define ``sample_texts(num: int) -> list[str]``; without it the callback
    warns once and does nothing. Texts go to TensorBoard (text tab, tag ``samples``) or, for other
    loggers, to ``<log_dir>/samples.log``. The global random state is restored afterwards, so logging
    samples does not change the training run.

    Args:
        every_n_steps: Log after every this many optimizer steps (global_step % every_n_steps == 0).
        num_samples: How many texts to generate each time.
        max_chars: Printed texts are cut to this many characters (logged texts are kept whole).
    """

    def __init__(self, every_n_steps: int = 500, num_samples: int = 3, max_chars: int = 300) -> None:
        for name, value in (("every_n_steps", every_n_steps), ("num_samples", num_samples), ("max_chars", max_chars)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SynthtuneError(f"SampleLogger: {name} must be an integer >= 1 (got {value!r}); pass a positive value")
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.max_chars = max_chars
        self._warned_missing = False
        self._last_step = -1

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # With gradient accumulation several batches share one global_step: log it once.
        if step == 0 or step % self.every_n_steps != 0 or step == self._last_step:
            return
        self._last_step = step
        sample_texts = getattr(pl_module, "sample_texts", None)
        if not callable(sample_texts):
            if not self._warned_missing and trainer.is_global_zero:
                log.warning(
                    "SampleLogger: %s has no sample_texts(num) method; no samples will be logged",
                    type(pl_module).__name__,
                )
            self._warned_missing = True
            return
        # Every rank generates (a sharded model needs all of them); only rank 0 prints and logs.
        texts = self._generate(pl_module, sample_texts)
        if trainer.is_global_zero:
            self._print(texts, step)
            self._log(trainer, texts, step)

    def _generate(self, pl_module: pl.LightningModule, sample_texts: Any) -> list[str]:
        was_training = pl_module.training
        device = pl_module.device
        cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                texts = sample_texts(self.num_samples)
        finally:
            if was_training:
                pl_module.train()
        return [str(t) for t in texts]

    def _print(self, texts: Sequence[str], step: int) -> None:
        console = Console()
        console.print(Text(f"samples at step {step}", style="bold magenta"))
        for number, text in enumerate(texts, start=1):
            console.print(Text(f"[{number}] ", style="cyan") + Text(truncate(text, self.max_chars)))

    def _log(self, trainer: pl.Trainer, texts: Sequence[str], step: int) -> None:
        files: list[Path] = []
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("samples", format_markdown(texts, step), step)
            else:
                files.append(Path(getattr(logger, "log_dir", None) or trainer.default_root_dir))
        if not trainer.loggers:
            files.append(Path(trainer.default_root_dir))
        for folder in dict.fromkeys(files):  # one file per folder, in order
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / SAMPLES_LOG).open("a", encoding="utf-8") as fh:
                fh.write(format_plain(texts, step))
