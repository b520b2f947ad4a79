"""The base of methods that steer a frozen LM: one backbone loader and one prompt initialisation.

The frozen backbone never enters a checkpoint (a checkpoint holds the prompts and whatever else
trains); loading rebuilds it from its spec, and the signature check refuses a mismatched checkpoint.

Each method takes its backbone as one :class:`~synthtune.components.backbone_spec.BackboneSpec`
(``--model.init_args.backbone``: the name, ``dtype`` and two speed options for large backbones on GPUs,
``gradient_checkpointing`` and ``compile``; see ``docs/gpu.md``) and passes it to
:meth:`FrozenBackboneModule.load_frozen_backbone`.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn

from synthtune.components.backbone import Backbone, load_backbone, random_token_embeddings, set_frozen_mode
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.base import SynthtuneModule

#: Lightning precisions that would cast the trainable prompts themselves to half precision.
_TRUE_HALF = ("bf16-true", "16-true")



class FrozenBackboneModule(SynthtuneModule):
    """Base class: :meth:`load_frozen_backbone` registers the frozen LM as ``self.backbone``."""

    #: Attribute names of frozen submodules: dropped from checkpoints and always in eval mode.
    frozen_modules: tuple[str, ...] = ("backbone",)

    @property
    def frozen_prefixes(self) -> tuple[str, ...]:
        return tuple(f"{name}." for name in self.frozen_modules)

    def load_frozen_backbone(self, spec: BackboneSpec) -> Backbone:
        """Load (once per process and setting) the frozen LM ``spec`` names and register it as ``self.backbone``
        (its spec as ``self.backbone_spec``)."""
        self.backbone_spec = spec
        bb = load_backbone(spec.name, spec.dtype, gradient_checkpointing=spec.gradient_checkpointing,
                           compile=spec.compile)
        self.backbone = bb.model
        self.tokenizer = bb.tokenizer
        return bb

    def random_token_prompt(self, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """A prompt initialisation ``[*shape, d]``: the real input vectors of random vocabulary tokens."""
        return random_token_embeddings(self.backbone, shape, seed)

    def configure_callbacks(self) -> list[pl.Callback]:
        """Refuse, before training, a precision that would turn the trainable prompts to half precision."""
        precision = str(self.trainer.precision)
        if self.trainer.state.fn == TrainerFn.FITTING and precision in _TRUE_HALF:
            raise SynthtuneError(
                f"--trainer.precision {precision} casts the trainable prompts to half precision; use "
                f"--trainer.precision bf16-mixed (add --model.init_args.backbone.dtype bf16 to halve the frozen weights)")
        return super().configure_callbacks()

    def train(self, mode: bool = True) -> "FrozenBackboneModule":
        """Switch the trainable parts; frozen models stay in eval mode (no dropout) regardless."""
        super().train(mode)
        for name in self.frozen_modules:
            module = getattr(self, name, None)
            if module is not None:
                set_frozen_mode(module)
        return self

    def trainable_state_keys(self) -> set[str]:
        return {k for k in self.state_dict() if not k.startswith(self.frozen_prefixes)}
