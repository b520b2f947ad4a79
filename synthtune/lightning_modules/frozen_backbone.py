"""The base of methods that steer a frozen LM: one backbone loader and one prompt initialisation.

The frozen backbone never enters a checkpoint (a checkpoint holds the prompts and whatever else
trains); loading rebuilds it from its spec, and the signature check refuses a mismatched checkpoint.

Each method takes its backbone as one :class:`~synthtune.components.backbone_spec.BackboneSpec`
(``--model.init_args.backbone``: the name, ``dtype`` and two speed options for large backbones on GPUs,
``gradient_checkpointing`` and ``compile``; see ``docs/gpu.md``) and passes it to
:meth:`FrozenBackboneModule.load_frozen_backbone`.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn

from synthtune.components.backbone import Backbone, load_backbone, random_token_embeddings, set_frozen_mode
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.engines import Engine
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.components.text_generation import decode_samples, eos_token_ids
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.base import SynthtuneModule
from synthtune.registry import method

#: Lightning precisions that would cast the trainable prompts themselves to half precision.
_TRUE_HALF = ("bf16-true", "16-true")



@method
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

    @torch.no_grad()
    def sample(self, prompts: torch.Tensor | Sequence[Sequence[int]], seeds: Sequence[int],
               settings: SamplingSettings | None = None, engine: Engine | None = None,
               attention_mask: torch.Tensor | None = None) -> tuple[list[str], list[bool]]:
        """One text per prompt from the frozen backbone, and whether each stopped at ``max_new_tokens`` instead
        of at EOS (``hit_cap``). The one place a generator's samples end (the tokenizer's and the model's EOS),
        are decoded and get their ``hit_cap``.

        Args:
            prompts: input vectors ``[N, t, d]`` (soft prompts, left-padded where ``attention_mask`` is 0) or the
                token ids of each text prompt.
            seeds: one seed per prompt.
            settings: the sampling settings of this call (default: the module's ``sampling``).
            engine: what decodes (default: the module's ``engine``).
            attention_mask: ``[N, t]`` for padded input vectors.
        """
        engine, settings = engine or self.engine, settings or self.sampling
        eos = eos_token_ids(self.backbone, self.tokenizer)
        if isinstance(prompts, torch.Tensor):
            sampled = engine.sample_embeds(self.backbone, prompts, seeds, settings, eos, attention_mask=attention_mask)
        else:
            sampled = engine.sample_ids(self.backbone, prompts, seeds, settings, eos, self.tokenizer.pad_token_id)
        return decode_samples(self.tokenizer, sampled)

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
