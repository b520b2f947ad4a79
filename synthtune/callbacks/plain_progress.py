"""Progress as plain lines when the output is not a terminal (a log file, a pipe, a batch job).

Lightning's progress bars draw in place for a terminal: sent to a file, the Rich bar writes nothing until the
run ends and the TQDM bar writes carriage-return frames. :class:`PlainProgress` prints one line every
``every_n_steps`` steps or ``every_seconds`` seconds, whichever comes first, when ``sys.stdout`` is not a TTY::

    fit: step 20/100 (20 %), loss 2.3140, 0.29 steps/s, elapsed 1:09, ETA 4:35
    predict: 24/48 samples (50 %), 1.31 samples/s, elapsed 0:18, ETA 0:18
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.data import extract_batch_size

from synthtune.errors import SynthtuneError


_now = time.monotonic  # the clock every line is timed with (a test may replace it)


def clock(seconds: float) -> str:
    """``seconds`` as m:ss (or h:mm:ss); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Pace:
    """Counts done out of a total since a start, and decides when a line is due (every ``every_n`` ticks, a
    tick being a step or a batch, or every ``every_seconds``)."""

    def __init__(self, total: Optional[float], start_count: int, every_n: int, every_seconds: float) -> None:
        self.total, self.start_count, self.every_n, self.every_seconds = total, start_count, every_n, every_seconds
        self.started = self.last_time = _now()
        self.last_count = start_count
        self.ticks = self.last_tick = 0

    def due(self, count: int) -> bool:
        """Count one tick at ``count`` done; whether a line is due now."""
        self.ticks += 1
        first = self.last_tick == 0
        last = self.total is not None and count >= self.total
        return (first or last or self.ticks - self.last_tick >= self.every_n
                or _now() - self.last_time >= self.every_seconds)

    def line(self, count: int, unit: str, name: str = "", extra: str = "") -> str:
        """``name count/total unit (p %), extra, rate unit/s, elapsed, ETA``; marks the line as printed."""
        now = _now()
        self.last_time, self.last_count, self.last_tick = now, count, self.ticks
        elapsed = now - self.started
        rate = (count - self.start_count) / elapsed if elapsed > 0 else float("nan")
        known = self.total is not None and math.isfinite(self.total) and self.total > 0
        head = f"{name}{count}" + (f"/{int(self.total)}" if known else "") + (f" {unit}" if not name else "")
        if known:
            head += f" ({100 * count / self.total:.0f} %)"
        eta = (self.total - count) / rate if known and rate > 0 else float("nan")
        speed = f"{rate:.2f} {unit}/s" if math.isfinite(rate) else f"? {unit}/s"
        return ", ".join(part for part in (head, extra, speed, f"elapsed {clock(elapsed)}", f"ETA {clock(eta)}") if part)


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
        self._pace: Optional[_Pace] = None
        self._done = 0

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
        if self._pace.due(self._done):
            self.emit(f"{stage}: {self._pace.line(self._done, self._unit)}")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loop_start(trainer, "predict", trainer.predict_dataloaders, "samples")

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._loop_batch("predict", batch, outputs)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pace = None

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loop_start(trainer, "test", None, "batches")

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._loop_batch("test", batch, outputs)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pace = None
