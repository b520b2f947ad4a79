"""Progress as plain lines when the output is not a terminal (a log file, a pipe, a batch job).

Lightning's progress bars draw in place for a terminal: sent to a file, the Rich bar writes nothing until the
run ends and the TQDM bar writes carriage-return frames. :class:`PlainProgress` prints one line every
``every_n_steps`` steps or ``every_seconds`` seconds, whichever comes first, when ``sys.stdout`` is not a TTY::

    fit: step 20/100 (20 %), loss 2.3140, 0.29 steps/s, elapsed 1:09, ETA 4:35
    predict: 24/48 samples (50 %), 1.31 samples/s, elapsed 0:18, ETA 0:18

Predict counts samples as each one ends, not as its loader batch does: the sampler reports every finished sample
(``synthtune.components.progress.advance``), so 48 samples decoded as one batch show 10/48, 20/48, ... on the way.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from contextlib import ExitStack
from typing import Any, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.data import extract_batch_size

from synthtune.components.progress import Pace, clock, listening
from synthtune.errors import SynthtuneError


_now = time.monotonic  # the clock every line is timed with (a test may replace it)


def _Pace(total: Optional[float], start_count: int, every_n: int, every_seconds: float) -> Pace:
    """A :class:`~synthtune.components.progress.Pace` on this module's clock."""
    return Pace(total, start_count, every_n, every_seconds, now=lambda: _now())


class PlainProgress(Callback):
    """One plain progress line every ``every_n_steps`` steps or ``every_seconds`` seconds when stdout is not a
    terminal (in a terminal the Rich bar shows progress and this prints nothing): for fit the step, loss, steps/s
    and ETA; for predict the samples done of this run's total, samples/s and ETA; for validate/test the batches.

    Args:
        every_n_steps: print at least every this many training steps (predict/test: batches).
        every_seconds: print at least this often, in seconds, whatever the step count.
        always: print the lines in a terminal too.
    """

    def __init__(self, every_n_steps: int = 10, every_seconds: float = 30.0, always: bool = False) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise SynthtuneError(f"PlainProgress every_n_steps must be at least 1, got {every_n_steps}")
        if not every_seconds > 0:
            raise SynthtuneError(f"PlainProgress every_seconds must be positive, got {every_seconds}")
        self.every_n_steps, self.every_seconds, self.always = every_n_steps, every_seconds, always
        self._pace: Optional[Pace] = None
        self._done = 0
        self._in_batch = self._batch_rows = 0
        self._listening = ExitStack()

    # ------------------------------------------------------------------------------------------------ helpers
    def active(self, trainer: pl.Trainer) -> bool:
        """Whether lines are printed: on rank 0, when stdout is not a terminal (or ``always``)."""
        if not trainer.is_global_zero:
            return False
        isatty = getattr(sys.stdout, "isatty", None)
        return self.always or not (callable(isatty) and isatty())

    @staticmethod
    def emit(text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    @staticmethod
    def _dataset_total(loaders: Any) -> Optional[int]:
        """Rows in the loaders' datasets (what this run predicts), or None when a dataset has no length."""
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        total = 0
        for loader in loaders:
            try:
                total += len(loader.dataset)
            except (TypeError, AttributeError):
                return None
        return total

    @staticmethod
    def _batch_size(batch: Any, outputs: Any) -> int:
        try:
            with warnings.catch_warnings():  # it warns about a dict batch of several sizes; the first is the rows
                warnings.simplefilter("ignore")
                return int(extract_batch_size(batch))
        except Exception:  # noqa: BLE001 - Lightning raises a bare exception type when it finds no tensor
            return len(outputs) if isinstance(outputs, (list, tuple)) else 1

    @staticmethod
    def _loss(trainer: pl.Trainer, outputs: Any) -> Optional[float]:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            metrics = trainer.callback_metrics
            loss = next((metrics[k] for k in ("train/loss", "train_loss", "loss") if k in metrics), None)
        try:
            return float(loss)
        except (TypeError, ValueError):
            return None

    # ---------------------------------------------------------------------------------------------------- fit
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active(trainer):
            self._pace = None
            return
        if trainer.max_steps is not None and trainer.max_steps > 0:
            total: Optional[float] = trainer.max_steps
        elif trainer.max_epochs is not None and trainer.max_epochs > 0 and math.isfinite(trainer.num_training_batches):
            total = trainer.max_epochs * trainer.num_training_batches
        else:
            total = None
        self._pace = _Pace(total, trainer.global_step, self.every_n_steps, self.every_seconds)
        where = f" (resumed at step {trainer.global_step})" if trainer.global_step else ""
        self.emit(f"fit: started{where}, {'?' if total is None else int(total)} steps")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self._pace is None or not self._pace.due(step) or step == self._pace.last_count:
            return
        loss = self._loss(trainer, outputs)
        extra = f"loss {loss:.4f}" if loss is not None else ""
        self.emit(f"fit: {self._pace.line(step, 'steps', name='step ', extra=extra)}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pace is not None:
            self.emit(f"fit: finished at step {trainer.global_step} in {clock(_now() - self._pace.started)}")
        self._pace = None

    # ---------------------------------------------------------------------------------- predict, validate, test
    def _loop_start(self, trainer: pl.Trainer, stage: str, loaders: Any, unit: str) -> None:
        if not self.active(trainer) or (stage == "validate" and trainer.sanity_checking):
            self._pace = None
            return
        total = self._dataset_total(loaders) if unit == "samples" else None
        if total is None and unit == "samples":
            unit = "batches"
        if unit == "batches":
            batches = getattr(trainer, f"num_{'val' if stage == 'validate' else stage}_batches", None)
            batches = [batches] if not isinstance(batches, list) else batches
            finite = [b for b in batches if isinstance(b, (int, float)) and math.isfinite(b)]
            total = sum(finite) if finite and len(finite) == len(batches) else None
        self._unit, self._done = unit, 0
        self._pace = _Pace(total, 0, self.every_n_steps, self.every_seconds)
        self.emit(f"{stage}: started, {'?' if total is None else int(total)} {unit}")

    def _loop_batch(self, stage: str, batch: Any, outputs: Any) -> None:
        if self._pace is None:
            return
        self._done += self._batch_size(batch, outputs) if self._unit == "samples" else 1
        self._in_batch = 0
        if self._done != self._pace.last_count and self._pace.due(self._done):
            self.emit(f"{stage}: {self._pace.line(self._done, self._unit)}")

    def _sample_ended(self, done: int) -> None:
        """Samples that ended inside the running batch (reported by the sampler), up to the batch's rows."""
        if self._pace is None or self._unit != "samples":
            return
        self._in_batch = min(self._in_batch + done, self._batch_rows)
        count = self._done + self._in_batch
        if count != self._pace.last_count and self._pace.due(count):
            self.emit(f"predict: {self._pace.line(count, self._unit)}")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loop_start(trainer, "predict", trainer.predict_dataloaders, "samples")
        if self._pace is not None:
            self._listening.enter_context(listening(self._sample_ended))

    def on_predict_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        self._in_batch, self._batch_rows = 0, self._batch_size(batch, None)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._loop_batch("predict", batch, outputs)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._listening.close()
        self._pace = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._listening.close()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loop_start(trainer, "test", None, "batches")

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._loop_batch("test", batch, outputs)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pace = None
