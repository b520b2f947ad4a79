"""The one interface through which every generator samples, whatever runs the decoding.

A generator (SoftSRV, DawGen, the template baselines and answers, SynAlign) builds its engine once with
:func:`~synthtune.components.engines.build.build_engine` and then asks it for tokens in one of two ways:

* :meth:`Engine.sample_embeds`: input vectors (a soft prompt, or a label prompt followed by embedded
  context tokens), computed by the LightningModule, which stays the owner of its prompts;
* :meth:`Engine.sample_ids`: token ids of a rendered text prompt.

Both return :class:`~synthtune.components.sampling.Sampled` (per row the generated ids without EOS and
whether the row ended at EOS), so the generator decodes, builds its rows and writes them the same way
under every engine. Every row carries its own seed (from the run seed and the sample id), so its text
does not depend on the batch it ran in, the number of ranks, or a resume.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable, Literal, Sequence

import torch
from torch import nn

from synthtune.components.sampling import Sampled
from synthtune.components.sampling_settings import SamplingSettings

#: What ``--model.init_args.engine`` accepts.
EngineName = Literal["native", "vllm"]


class Engine(ABC):
    """Samples continuations of prompts from a frozen decoder."""

    #: The engine's name, as ``--model.init_args.engine`` gives it.
    name: str = ""

    @abstractmethod
    def sample_embeds(self, model: nn.Module, prefix: torch.Tensor, seeds: Sequence[int],
                      settings: SamplingSettings, eos_token_ids: Iterable[int],
                      attention_mask: torch.Tensor | None = None) -> Sampled:
        """One sample per prefix row.

        Args:
            model: the module's frozen Hugging Face backbone (the native engine decodes with it).
            prefix: ``[N, t, d]`` input vectors, left-padded where ``attention_mask`` says so.
            seeds: one seed per row.
            settings: temperature, top-p, max_new_tokens and repetition penalty of this call.
            eos_token_ids: the tokens that end a sample (not part of the output).
            attention_mask: ``[N, t]``, 0 on padding; ``None``: no padding.
        """

    @abstractmethod
    def sample_ids(self, model: nn.Module, ids: Sequence[Sequence[int]], seeds: Sequence[int],
                   settings: SamplingSettings, eos_token_ids: Iterable[int], pad_token_id: int,
                   batch_size: int | None = None) -> Sampled:
        """One sample per tokenized text prompt (``ids`` rows may differ in length).

        Args:
            model: the module's frozen Hugging Face backbone.
            ids: the prompts' token ids, exactly as the model should read them.
            seeds: one seed per prompt.
            settings: the sampling settings of this call.
            eos_token_ids: the tokens that end a sample.
            pad_token_id: the id the native engine left-pads with (masked out).
            batch_size: rows decoded at once by the native engine (``None``: from free memory); vLLM schedules
                its own batches.
        """

    def params(self) -> dict[str, Any]:
        """What each output row records about the engine in ``params`` (nothing for the native sampler, so
        files written before engines existed still resume; ``engine: vllm`` otherwise, so a resume never
        mixes the two engines' texts in one file)."""
        return {} if self.name == "native" else {"engine": self.name}
