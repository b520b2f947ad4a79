"""The one interface through which every generator samples, whatever runs the decoding.

A generator (SoftSRV, DawGen, the template baselines and answers, SynAlign) builds its engine once with
:func:`build_engine` and then asks it for tokens in one of two ways:

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
from typing import Any, Iterable, Literal, Mapping, Sequence

import torch
from torch import nn

from synthtune.components.sampling import Sampled
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.errors import SynthtuneError

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


def build_engine(name: str, options: Mapping[str, Any] | None, backbone) -> Engine:
    """The engine ``name`` for ``backbone`` (a :class:`~synthtune.components.backbone.Backbone`).

    Args:
        name: ``native`` (synthtune's sampler) or ``vllm``.
        options: keyword arguments of ``vllm.LLM`` for ``vllm`` (``tensor_parallel_size``, ``data_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``, ``max_num_seqs``, ...); must be empty for ``native``.
        backbone: the frozen model the generator loaded (its folder and dtype are what vLLM loads).
    """
    options = dict(options or {})
    if name == "native":
        if options:
            raise SynthtuneError(f"engine_options {sorted(options)} are vLLM's; drop --model.init_args.engine_options "
                                 f"or pass --model.init_args.engine vllm")
        from synthtune.components.engines.native import NativeEngine

        return NativeEngine()
    if name == "vllm":
        from synthtune.components.engines.vllm_engine import VLLMEngine

        return VLLMEngine(backbone, options)
    raise SynthtuneError(f"unknown engine {name!r}; use native or vllm")
