"""The base of methods that steer a frozen LM: one backbone loader and one prompt initialisation.

The frozen backbone never enters a checkpoint (a checkpoint holds the prompts and whatever else
trains); loading rebuilds it from its spec, and the signature check refuses a mismatched checkpoint.
"""

from __future__ import annotations

import torch

from synthtune.components.backbone import Backbone, load_backbone, random_token_embeddings
from synthtune.lightning_modules.base import SynthtuneModule


class FrozenBackboneModule(SynthtuneModule):
    """Base class: :meth:`load_frozen_backbone` registers the frozen LM as ``self.backbone``."""

    #: Attribute names of frozen submodules: dropped from checkpoints and always in eval mode.
    frozen_modules: tuple[str, ...] = ("backbone",)

    @property
    def frozen_prefixes(self) -> tuple[str, ...]:
        return tuple(f"{name}." for name in self.frozen_modules)

    def load_frozen_backbone(self, backbone: str, dtype: str) -> Backbone:
        """Load (once per process) the frozen LM and register it with its tokenizer."""
        bb = load_backbone(backbone, dtype)
        self.backbone = bb.model
        self.tokenizer = bb.tokenizer
        return bb

    def random_token_prompt(self, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """A prompt initialisation ``[*shape, d]``: the real input vectors of random vocabulary tokens."""
        return random_token_embeddings(self.backbone, shape, seed)

    def train(self, mode: bool = True) -> "FrozenBackboneModule":
        """Switch the trainable parts; frozen models stay in eval mode (no dropout) regardless."""
        super().train(mode)
        for name in self.frozen_modules:
            module = getattr(self, name, None)
            if module is not None:
                module.eval()
        return self

    def trainable_state_keys(self) -> set[str]:
        return {k for k in self.state_dict() if not k.startswith(self.frozen_prefixes)}
