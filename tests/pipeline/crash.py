"""A callback that crashes a predict run once, mid-way, as a kill would (used through a config's class_path)."""

from __future__ import annotations

from pathlib import Path

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
