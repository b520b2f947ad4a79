"""The base of methods that only generate: a frozen LM, prompted at predict time, nothing to train."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn

from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.frozen_backbone import FrozenBackboneModule
from synthtune.registry import method


@method
class PredictOnlyModule(FrozenBackboneModule):
    """A generator without trainable weights: ``predict`` is its only stage, any other is refused
    with one line before Lightning looks for a training step."""

    def configure_callbacks(self) -> list[pl.Callback]:
        # The first module hook a Trainer calls, before it checks for training_step/optimizers.
        stage = self.trainer.state.fn
        if stage != TrainerFn.PREDICTING:
            verb = getattr(stage, "value", stage)
            raise SynthtuneError(f"{type(self).__name__} has nothing to train: it only generates; run "
                                 f"`synthtune predict --config <config>` instead of `synthtune {verb}`")
        return super().configure_callbacks()
