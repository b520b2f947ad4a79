"""Kills for the pipeline tests: a callback that crashes a predict run once, mid-way (used through a config's
class_path), and :func:`kill_in`, which kills a pipeline inside one stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from lightning.pytorch.callbacks import Callback


class CrashOnce(Callback):
    """Raise at the start of predict batch ``at_batch`` unless ``marker`` exists; create it first.

    Args:
        marker: file whose existence means the crash already happened.
        at_batch: the batch index to crash at (the batches before it are written).
    """

    def __init__(self, marker: str, at_batch: int = 1) -> None:
        self.marker = Path(marker)
        self.at_batch = at_batch

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == self.at_batch and not self.marker.exists():
            self.marker.write_text("crashed")
            raise RuntimeError("simulated crash mid-predict")


class Killed(Exception):
    """What a kill injected into a pipeline stage raises."""


def kill_in(stage: str, after: bool, run: Callable[[], Any], root: Path, monkeypatch) -> None:
    """Run the pipeline (``run``) with ``stage`` killed before its work (or after it, before its manifest is
    written); check that the stage left no manifest under ``root``, then put the real stage back."""
    from synthtune.pipeline import STAGES

    real = STAGES[stage]

    def killed(ctx, section, folder):
        if after:  # the work is done, the manifest not yet written
            real.run(ctx, section, folder)
        raise Killed(f"killed in {stage}")

    monkeypatch.setitem(STAGES, stage, type(real)(real.inputs, killed, real.settings, real.makes_rows))
    with pytest.raises(Killed, match=f"killed in {stage}"):
        run()
    assert not (root / stage / "manifest.json").exists()
    monkeypatch.setitem(STAGES, stage, real)
