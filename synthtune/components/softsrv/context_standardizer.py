"""Per-dimension standardisation of SoftSRV's context vectors z = E(x).

Raw encoder outputs differ wildly in scale across dimensions and encoders (static token embeddings
are tiny; a decoder's last hidden states have a few huge dimensions), and the first layer of
P_θ(z) sees z as it is. Standardising every dimension over the training contexts puts z on one
scale whatever the encoder, so P_θ can read all of it. The mean and standard deviation are computed
once, from the training contexts, and kept as buffers: they travel in the checkpoint and are applied
unchanged to the contexts at predict time.
"""

from __future__ import annotations

import torch
from torch import nn

from synthtune.errors import SynthtuneError


class ContextStandardizer(nn.Module):
    """z ↦ (z − μ) / σ per dimension, with μ, σ fitted once on the training contexts.

    A dimension that is constant over the training set (σ below ``eps``) is only centred.

    Args:
        dim: size d_e of the context vectors.
        eps: smallest standard deviation treated as non-zero.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @property
    def fitted(self) -> bool:
        """Whether μ and σ were fitted (here, or loaded from a checkpoint)."""
        return bool(self.count.item() > 0)

    @torch.no_grad()
    def fit(self, z: torch.Tensor) -> None:
        """Set μ and σ from the training contexts ``z`` [n, d_e]."""
        if z.ndim != 2 or z.shape[1] != self.mean.shape[0] or z.shape[0] == 0:
            raise SynthtuneError(f"context vectors have shape {tuple(z.shape)}; expected (n > 0, {self.mean.shape[0]})")
        z = z.to(self.mean.device, torch.float64)
        std = z.std(dim=0, unbiased=False)
        self.mean.copy_(z.mean(dim=0))  # μ_j = (1/n) Σ_i z_ij
        self.std.copy_(torch.where(std > self.eps, std, torch.ones_like(std)))  # σ_j = sqrt((1/n) Σ_i (z_ij − μ_j)²)
        self.count.fill_(z.shape[0])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z.to(self.mean.dtype) - self.mean) / self.std  # (z − μ) / σ
