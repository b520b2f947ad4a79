"""A frozen causal LM read with a soft prefix in place of a text prompt.

The sequence fed to the decoder is ``[P ; E_tok(x)]``: t soft vectors followed by the frozen token
embeddings of the real example x. Only x's tokens are scored (SoftSRV Eq. 1,
``argmin_θ Σ_i ℓ(H(P_θ(E(x_i))), x_i)``), and logits are computed only at the positions that
predict a real token, never at the t prompt positions or at padding, which keeps the memory of
the vocabulary projection proportional to the real tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthtune.components.backbone import embed_tokens


def _decoder_hidden(model: nn.Module, prefix: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states at the positions that predict x_1..x_L: [B, L, d]."""
    tokens = embed_tokens(model, input_ids)
    prefix = prefix.to(tokens.dtype)
    t = prefix.shape[1]
    inputs = torch.cat([prefix, tokens], dim=1)
    mask = torch.cat([attention_mask.new_ones(prefix.shape[:2]), attention_mask], dim=1)
    hidden = model.base_model(inputs_embeds=inputs, attention_mask=mask, use_cache=False).last_hidden_state
    # Position t-1+j (the last prompt vector, then x_<j) predicts token x_j.
    return hidden[:, t - 1: t - 1 + input_ids.shape[1]]


def prefix_token_logprobs(model: nn.Module, prefix: torch.Tensor, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
    """log Pr(x_j | P, x_<j) for every token of x: [B, L], zero at padding."""
    hidden = _decoder_hidden(model, prefix, input_ids, attention_mask)
    valid = attention_mask.bool()
    logits = model.get_output_embeddings()(hidden[valid]).float()  # only real-token positions
    picked = -F.cross_entropy(logits, input_ids[valid], reduction="none")
    out = torch.zeros(input_ids.shape, dtype=picked.dtype, device=picked.device)
    return out.masked_scatter(valid, picked)


def reconstruction_loss(model: nn.Module, prefix: torch.Tensor, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of x's real tokens given the soft prefix (SoftSRV Eq. 1)."""
    hidden = _decoder_hidden(model, prefix, input_ids, attention_mask)
    valid = attention_mask.bool()
    logits = model.get_output_embeddings()(hidden[valid]).float()
    return F.cross_entropy(logits, input_ids[valid])
