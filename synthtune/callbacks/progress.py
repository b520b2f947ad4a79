"""A progress bar whose counts stay right when training is bounded by ``max_steps`` and resumed."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from synthtune.callbacks.plain_progress import PlainProgress


def epoch_batch_total(num_batches: int | float, start_batch: int, max_steps: int, global_step: int) -> int | float:
    """How many batches this epoch runs: all ``num_batches``, or fewer when ``max_steps`` ends training
    first. A resumed epoch starts at batch ``start_batch`` (the bar counts from there), so the steps
    left are added to it: total = min(num_batches, start_batch + max_steps - global_step)."""
    if max_steps is None or max_steps < 0:
        return num_batches
    return min(num_batches, start_batch + max(max_steps - global_step, 0))


class RunProgressBar(RichProgressBar):
    """Lightning's ``RichProgressBar`` (all its arguments apply), with two counts fixed: a resumed run
    showed "30/14" (batches done in the resumed epoch against only the steps still left), and a run
    bounded by ``max_steps`` showed "Epoch 3/-2" (``max_epochs`` is -1 then). The epoch total is now
    counted from the batch the epoch resumed at, and the epoch has no "/max" when epochs are unbounded."""

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
