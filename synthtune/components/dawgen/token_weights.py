"""Token weighting network Φ_W of DawGen (Alg. 1): one weight per token of a real example.

Φ_W maps each token's representation ``h_j ∈ R^d`` to a score; the scores of the valid (non-pad)
tokens of the whole batch go through one softmax and are multiplied by the number of valid tokens:

    W_j = N · exp(s_j) / Σ_{k valid} exp(s_k),     N = number of valid tokens in the batch.

So the weights are positive, sum to N and average 1: equal scores give ``W_j = 1`` for every
token (the unweighted loss), and the weighted loss stays on the scale of the plain mean. Pad tokens
get weight 0. Normalising over the batch (not per example) lets Φ_W move weight between examples
as well as within one.

Tokens marked ``fixed`` (e.g. each example's EOS, see ``DawGenModule(pin_eos_weight=True)``) weigh
exactly 1 and take no part in the softmax; the other valid tokens share their own count as above.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from synthtune.errors import SynthtuneError

WEIGHT_MODES = ("learned", "uniform")


class TokenWeightNet(nn.Module):
    """Φ_W: R^d → R, normalised to token weights over the batch's valid tokens.

    Args:
        hidden_size: dimension ``d`` of the token representations.
        mlp_size: width of the hidden layer of the scoring MLP.
        mode: ``"learned"`` (the MLP scores tokens) or ``"uniform"`` (every valid token weighs 1;
            the unweighted baseline, with no trainable parameters used).
        zero_init: start the output layer at zero so the initial weights are uniform (then only the
            output layer receives a meta-gradient on the very first step).
    """

    def __init__(self, hidden_size: int, mlp_size: int = 64, mode: str = "learned", zero_init: bool = True) -> None:
        super().__init__()
        if mode not in WEIGHT_MODES:
            raise SynthtuneError(f"unknown token weight mode {mode!r}; use one of {', '.join(WEIGHT_MODES)}")
        if hidden_size < 1 or mlp_size < 1:
            raise SynthtuneError(
                f"TokenWeightNet sizes must be >= 1, got hidden_size={hidden_size}, mlp_size={mlp_size}; "
                f"pass positive sizes"
            )
        self.mode = mode
        self.hidden_size = hidden_size
        self.mlp = nn.Sequential(nn.Linear(hidden_size, mlp_size), nn.Tanh(), nn.Linear(mlp_size, 1))
        if zero_init:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def scores(self, hidden: Tensor) -> Tensor:
        """Raw scores Φ_W(h_j), shape ``[B, T]``, before normalisation."""
        return self.mlp(hidden.to(self.mlp[0].weight.dtype)).squeeze(-1)

    def forward(self, hidden: Tensor, mask: Tensor, fixed: Tensor | None = None) -> Tensor:
        """Token weights ``[B, T]``: 0 on pads, mean 1 over the batch's valid tokens.

        Args:
            hidden: ``[B, T, d]`` token representations h_j.
            mask: ``[B, T]`` with 1 (or True) on valid tokens and 0 on padding.
            fixed: optional ``[B, T]`` mask of valid tokens whose weight is pinned to 1.
        """
        if hidden.dim() != 3 or hidden.shape[:2] != mask.shape or hidden.shape[-1] != self.hidden_size:
            raise SynthtuneError(
                f"TokenWeightNet needs hidden [B, T, {self.hidden_size}] and mask [B, T], got "
                f"{tuple(hidden.shape)} and {tuple(mask.shape)}; pass the token representations and their mask"
            )
        valid = mask.bool()
        n_valid = int(valid.sum())
        if n_valid == 0:
            raise SynthtuneError("TokenWeightNet got a batch with no valid tokens; check the attention mask")
        if self.mode == "uniform":
            return valid.to(hidden.dtype if hidden.is_floating_point() else torch.float32)
        pinned = valid & fixed.bool() if fixed is not None else torch.zeros_like(valid)
        free = valid & ~pinned
        scores = self.scores(hidden)
        scores = scores.masked_fill(~free, float("-inf"))
        n_free = int(free.sum())
        if n_free == 0:
            return pinned.to(scores.dtype)
        # DawGen token weights: W = N · softmax over the batch's valid tokens (uniform scores → 1); N counts the
        # unpinned ones, and pinned tokens weigh 1
        flat = torch.softmax(scores.reshape(-1), dim=0).reshape(scores.shape)
        return flat * n_free + pinned.to(scores.dtype)
