"""synthtune's own sampler as an engine: continuous batching over a slot KV cache of the Hugging Face model
(:func:`synthtune.components.sampling.sample_from_prefix`). The default engine, and the reference the
vLLM engine is tested against."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from synthtune.components import sampling
from synthtune.components.backbone import embed_tokens
from synthtune.components.engines.engine import Engine
from synthtune.components.sampling import Sampled
from synthtune.components.sampling_settings import SamplingSettings


def left_pad(ids: Sequence[Sequence[int]], pad_token_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids as one left-padded ``[N, T]`` tensor and its mask (0 on padding), so every prompt
    ends where generation starts."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(ids), width), dtype=torch.long, device=device)
    for row, x in enumerate(ids):
        input_ids[row, width - len(x):] = torch.tensor(list(x), dtype=torch.long, device=device)
        mask[row, width - len(x):] = 1
    return input_ids, mask


class NativeEngine(Engine):
    """Samples in this process with synthtune's sampler (per-sample ``torch.Generator`` streams)."""

    name = "native"

    def sample_embeds(self, model: nn.Module, prefix: torch.Tensor, seeds: Sequence[int],
                      settings: SamplingSettings, eos_token_ids: Iterable[int],
                      attention_mask: torch.Tensor | None = None, batch_size: int | None = None) -> Sampled:
        # through the module, so that a spy on sampling.sample_from_prefix sees every generator's calls
        return sampling.sample_from_prefix(model, prefix, list(seeds), settings.max_new_tokens, eos_token_ids,
                                           temperature=settings.temperature, top_p=settings.top_p,
                                           attention_mask=attention_mask, batch_size=batch_size,
                                           return_finished=True, repetition_penalty=settings.repetition_penalty)

    def sample_ids(self, model: nn.Module, ids: Sequence[Sequence[int]], seeds: Sequence[int],
                   settings: SamplingSettings, eos_token_ids: Iterable[int], pad_token_id: int,
                   batch_size: int | None = None) -> Sampled:
        input_ids, mask = left_pad(ids, pad_token_id, model.get_input_embeddings().weight.device)
        return self.sample_embeds(model, embed_tokens(model, input_ids), seeds, settings, eos_token_ids,
                                  attention_mask=mask, batch_size=batch_size)
