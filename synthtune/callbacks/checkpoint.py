"""Checkpointing that always leaves ``last.ckpt`` at the step where training ended."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from synthtune.errors import SynthtuneError
from synthtune.paths import OutputLock, atomic_write, run_folder_lock


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (all its arguments apply), plus one guarantee: when training
    stops between two saving intervals (``max_steps`` reached mid-interval), ``last.ckpt`` is still
    written for the final step, so ``--ckpt_path last`` continues from where the run really ended.
    A run stopped by SIGTERM (``kill``, a scheduler's preemption) is saved too, at the step it reached
    (Lightning stops it between two batches). A run stopped by an error (e.g. a NaN loss) is not
    saved: the last good checkpoint stays.
    The synthtune CLI sets ``save_last=True`` and ``enable_version_counter=False``, so a resumed run
    keeps writing the same ``last.ckpt`` instead of ``last-v1.ckpt``.

    One fit per run folder: rank 0 holds ``<default_root_dir>/.fit.lock`` (``synthtune.paths``) from
    setup to the end, so a second fit into a folder that another one is writing stops at once with
    one line naming the holder, before it loads or writes anything."""

    _run_lock: OutputLock | None = None

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage == "fit":
            problem = None
            if trainer.is_global_zero:
                try:
                    self._run_lock = run_folder_lock(trainer.default_root_dir)
                    self._run_lock.acquire()
                except SynthtuneError as exc:
                    self._run_lock, problem = None, str(exc)
            problem = trainer.strategy.broadcast(problem)  # every rank stops, none waits for rank 0
            if problem:
                raise SynthtuneError(problem)
        super().setup(trainer, pl_module, stage)

    def _release_run_lock(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self._release_run_lock()
        super().teardown(trainer, pl_module, stage)

    @property
    def state_key(self) -> str:
        # Saving intervals are not part of the identity, so a resumed run that changes
        # --checkpoint.every_n_train_steps still restores this callback's state.
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_train_end(trainer, pl_module)
        if (self.save_last and not trainer.fast_dev_run and trainer.global_step > 0
                and self._last_global_step_saved != trainer.global_step):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """A fit resumed from a checkpoint that is already at ``max_steps`` trains nothing, and Lightning then
        writes no ``last.ckpt``; when the folder has none (it was deleted, ``--ckpt_path`` named another
        checkpoint of it), the checkpoint it resumed from is copied there (atomically): it is the last state."""
        super().on_fit_end(trainer, pl_module)
        resumed = trainer.ckpt_path
        if not (self.save_last and trainer.is_global_zero and resumed and self.dirpath):
            return
        last = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        if not last.exists() and Path(resumed).is_file():
            with Path(resumed).open("rb") as source, atomic_write(last) as target:
                shutil.copyfileobj(source, target)
            self.last_model_path = str(last)

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        try:
            self._save_on_sigterm(trainer, exception)
        finally:
            self._release_run_lock()

    def _save_on_sigterm(self, trainer: "pl.Trainer", exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        if self.save_last and not trainer.fast_dev_run and trainer.global_step > 0:
            if self._last_global_step_saved != trainer.global_step:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            exception.synthtune_kept = f"{self.last_model_path} holds step {trainer.global_step}"
