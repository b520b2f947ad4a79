"""A progress bar whose counts stay right when training is bounded by ``max_steps`` and resumed, and whose predict
bar counts samples as each one ends (not loader batches)."""

from __future__ import annotations

from contextlib import ExitStack
from importlib import import_module
from typing import Any, Optional

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from synthtune.callbacks.plain_progress import PlainProgress
from synthtune.components.progress import listening


def epoch_batch_total(num_batches: int | float, start_batch: int, max_steps: int, global_step: int) -> int | float:
    """How many batches this epoch runs: all ``num_batches``, or fewer when ``max_steps`` ends training
    first. A resumed epoch starts at batch ``start_batch`` (the bar counts from there), so the steps
    left are added to it: total = min(num_batches, start_batch + max_steps - global_step)."""
    if max_steps is None or max_steps < 0:
        return num_batches
    return min(num_batches, start_batch + max(max_steps - global_step, 0))


class RunProgressBar(RichProgressBar):
    """Lightning's ``RichProgressBar`` (all its arguments apply), with three counts fixed: a resumed run
    showed "30/14" (batches done in the resumed epoch against only the steps still left), and a run
    bounded by ``max_steps`` showed "Epoch 3/-2" (``max_epochs`` is -1 then). The epoch total is now
    counted from the batch the epoch resumed at, and the epoch has no "/max" when epochs are unbounded.
    Predict counts samples, as the plain progress line does: the total is the rows of the predict data and the
    bar moves as the sampler reports each sample that ends (``synthtune.components.progress.advance``), so 48
    samples decoded as one batch go 1/48, 2/48, ... instead of sitting at 0/1. It listens while it draws to a
    terminal; a dataset without a length keeps Lightning's batch count."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sample_totals: Optional[list[int]] = None
        self._samples_before = self._in_batch = self._batch_rows = 0
        self._loader_idx = -1
        self._listening = ExitStack()

    @property
    def total_train_batches(self) -> int | float:
        trainer = self.trainer
        epoch_loop = trainer.fit_loop.epoch_loop
        # a restored epoch resumes at the batches it had done; otherwise the counter is last epoch's
        start = epoch_loop.batch_progress.current.ready if epoch_loop.restarting else 0
        return epoch_batch_total(trainer.num_training_batches, start, trainer.max_steps, trainer.global_step)

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        description = f"Epoch {current_epoch}" + (f"/{max_epochs - 1}" if max_epochs and max_epochs > 0 else "")
        # as Lightning does: pad to the validation label so the bar does not flicker
        return f"{description:{len(self.validation_description)}}"

    # ------------------------------------------------------------------------------- predict, counted in samples
    @property
    def total_predict_batches_current_dataloader(self) -> int | float:
        """The predict bar's total: the current loader's rows (samples), or its batches without a known length."""
        if self._sample_totals is None:
            return super().total_predict_batches_current_dataloader
        return self._sample_totals[self._current_eval_dataloader_idx or 0]

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_predict_start(trainer, pl_module)
        loaders = trainer.predict_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        totals = [PlainProgress._dataset_total(loader) for loader in loaders]
        self._sample_totals = None if None in totals else totals
        self._samples_before, self._loader_idx = 0, -1
        console = getattr(self, "_console", None)
        drawing = self.is_enabled and console is not None and (console.is_terminal or console.is_jupyter)
        if self._sample_totals is not None and drawing:
            self._listening.enter_context(listening(self._sample_ended))

    def on_predict_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        super().on_predict_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if dataloader_idx != self._loader_idx:
            self._samples_before, self._loader_idx = 0, dataloader_idx
        self._in_batch, self._batch_rows = 0, PlainProgress._batch_size(batch, None)

    def _sample_ended(self, done: int) -> None:
        """Samples that ended inside the running batch (reported by the sampler), up to the batch's rows."""
        self._in_batch = min(self._in_batch + done, self._batch_rows)
        self._update(self.predict_progress_bar_id, self._samples_before + self._in_batch)

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        if self._sample_totals is None:
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
            return
        self._samples_before += PlainProgress._batch_size(batch, outputs)
        self._in_batch = 0
        if not self.is_disabled and self.predict_progress_bar_id is not None:
            self._update(self.predict_progress_bar_id, self._samples_before)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._listening.close()
        super().on_predict_end(trainer, pl_module)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._listening.close()
        super().on_exception(trainer, pl_module, exception)


RUN_PROGRESS_BAR = "synthtune.callbacks.RunProgressBar"
PLAIN_PROGRESS = "synthtune.callbacks.PlainProgress"


def _is_progress_bar(class_path: str | None) -> bool:
    """Whether ``class_path`` (a config's callback) names a Lightning progress bar."""
    if not class_path:
        return False
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False  # jsonargparse reports an unknown class itself
    return isinstance(cls, type) and issubclass(cls, ProgressBar)


def use_run_progress_bar(callbacks: Any, enabled: bool | None) -> list[Any]:
    """The parsed ``trainer.callbacks`` of a config with synthtune's progress bar: Lightning's
    ``RichProgressBar`` becomes :class:`RunProgressBar` (same arguments, right counts), and a run with
    progress bars enabled (``trainer.enable_progress_bar`` not false) that names no progress bar gets
    a ``RunProgressBar`` instead of Lightning's default bar (its unfixed ``RichProgressBar``, or TQDM
    without Rich), which shows "30/14" after a resume. With progress enabled, :class:`PlainProgress` is added
    too (unless named): it prints plain progress lines when stdout is not a terminal (a log file), where the
    bars stay silent, and nothing in a terminal. Both are in the saved config whatever the terminal, so a
    config (and a pipeline stage's key) does not depend on where it was run."""
    callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, list) else [callbacks]
    for callback in callbacks:
        if getattr(callback, "class_path", None) == "lightning.pytorch.callbacks.RichProgressBar":
            callback.class_path = RUN_PROGRESS_BAR
    named = any(isinstance(c, ProgressBar) or _is_progress_bar(getattr(c, "class_path", None)) for c in callbacks)
    if enabled is not False and not named:
        callbacks.append(Namespace(class_path=RUN_PROGRESS_BAR, init_args=Namespace()))
    plain = any(isinstance(c, PlainProgress) or getattr(c, "class_path", None) == PLAIN_PROGRESS for c in callbacks)
    if enabled is not False and not plain:
        callbacks.append(Namespace(class_path=PLAIN_PROGRESS, init_args=Namespace()))
    return callbacks
