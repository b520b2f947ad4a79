"""Batched temperature / top-p sampling from a soft prefix, with a KV cache.

Each row gets its own random stream (a ``torch.Generator`` seeded per sample), and tokens are
drawn with the Gumbel-max trick, so a sample depends only on its seed and its prefix: the same
sample id gives the same text whatever the batch size, the number of ranks, or whether the run
was resumed.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import torch
from torch import nn


def sample_seed(base_seed: int, sample_id: int, *salt: object) -> int:
    """A 63-bit seed that depends only on the run seed, the sample id and ``salt`` (the method and
    stage), so resumed and sharded runs reproduce a sample while different methods, or different
    stages of one method, never share a random stream."""
    key = ":".join(str(part) for part in (base_seed, sample_id, *salt)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every logit outside the smallest set whose probability mass reaches ``top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def gumbel_noise(generators: Sequence[torch.Generator], vocab: int, device: torch.device) -> torch.Tensor:
    """One row of standard Gumbel noise per generator: [B, V]."""
    rows = [torch.rand(vocab, generator=g) for g in generators]
    uniform = torch.stack(rows).clamp_(1e-10, 1.0 - 1e-7).to(device)
    return -torch.log(-torch.log(uniform))


def next_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Sample one token per row from softmax(logits / temperature) restricted to the top-p set."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(logits.float() / temperature, top_p)
    return (logits + gumbel_noise(generators, logits.shape[-1], logits.device)).argmax(dim=-1)


@torch.inference_mode()
def sample_from_prefix(
    model: nn.Module,
    prefix: torch.Tensor,
    seeds: Sequence[int],
    max_new_tokens: int,
    eos_token_ids: Iterable[int],
    temperature: float = 1.0,
    top_p: float = 1.0,
    attention_mask: torch.Tensor | None = None,
) -> list[list[int]]:
    """Generate up to ``max_new_tokens`` tokens after each prefix row; stop a row at EOS.

    Args:
        model: a frozen Hugging Face causal LM.
        prefix: [B, t, d] soft prompt vectors (the model's whole input context).
        seeds: one seed per row.
        max_new_tokens: hard cap on generated tokens.
        eos_token_ids: tokens that end a sample (not included in the output).
        temperature: softmax temperature; 0 means greedy.
        top_p: nucleus sampling mass; 1 disables it.
        attention_mask: [B, t] mask of a left-padded prefix (0 = padding); ``None`` means no padding.

    Returns:
        One list of token ids per row.
    """
    if prefix.shape[0] != len(seeds):
        raise ValueError(f"{prefix.shape[0]} prefixes but {len(seeds)} seeds")
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    base, head = model.base_model, model.get_output_embeddings()
    dtype = model.get_input_embeddings().weight.dtype
    eos = torch.tensor(sorted(set(eos_token_ids)), device=prefix.device)
    mask = positions = None
    if attention_mask is not None:
        mask = attention_mask.to(prefix.device).long()
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = base(inputs_embeds=prefix.to(dtype), attention_mask=mask, position_ids=positions, use_cache=True)
    past, last = out.past_key_values, out.last_hidden_state[:, -1]
    finished = torch.zeros(prefix.shape[0], dtype=torch.bool, device=prefix.device)
    steps = []
    for _ in range(max_new_tokens):
        token = next_tokens(head(last), temperature, top_p, generators)
        token = torch.where(finished, eos[0], token)
        steps.append(token)
        finished |= torch.isin(token, eos)
        if bool(finished.all()):
            break
        if mask is not None:  # left padding: extend the mask, continue each row's own positions
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            positions = positions[:, -1:] + 1
        out = base(input_ids=token.unsqueeze(1), attention_mask=mask, position_ids=positions,
                   past_key_values=past, use_cache=True)
        past, last = out.past_key_values, out.last_hidden_state[:, -1]
    if not steps:
        return [[] for _ in seeds]
    tokens = torch.stack(steps, dim=1).tolist()
    eos_set = set(eos.tolist())
    result = []
    for row in tokens:
        cut = next((i for i, tok in enumerate(row) if tok in eos_set), len(row))
        result.append(row[:cut])
    return result
