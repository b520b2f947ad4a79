"""SoftSRV soft-prompt parameterizations P_θ(z) ∈ R^{t×d} (DeSalvo et al., ICLR 2025, Sec. 3).

Each module maps a batch of context vectors z ∈ R^{B×d_e} to a batch of soft prompts
R^{B×t×d} that are fed to a frozen decoder *instead of* token embeddings:

* :class:`NonParametricPrompt` (SS_NP): P itself is the parameter; z is ignored.
* :class:`MixturePrompt` (SS_MPk): k basis prompts mixed by w = softmax(W_φ z).
* :class:`MLPPrompt` (SS_MC): one small MLP F_φi: R^{d_e} → R^d per soft token, evaluated for all t
  tokens at once as batched matmuls (never a Python loop over t modules).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from synthtune.errors import SynthtuneError

PARAMETERIZATIONS = ("np", "mp", "mc")


def _check_length(prompt_length: int) -> None:
    if prompt_length <= 0:
        raise SynthtuneError(f"prompt_length must be a positive number of soft tokens, got {prompt_length}")


def _init_prompt(init: torch.Tensor | None, prompt_length: int, hidden_size: int, std: float) -> torch.Tensor:
    if init is not None:
        if init.shape != (prompt_length, hidden_size):
            raise ValueError(f"init has shape {tuple(init.shape)}, expected {(prompt_length, hidden_size)}")
        return init.detach().clone().float()
    return torch.randn(prompt_length, hidden_size) * std


class NonParametricPrompt(nn.Module):
    """SS_NP: P ∈ R^{t×d} is trained directly and shared by every example.

    Args:
        prompt_length: number of soft tokens t.
        hidden_size: the backbone's embedding size d.
        init: optional [t, d] starting value (e.g. embeddings of random vocabulary tokens).
        init_std: standard deviation of a random start when ``init`` is not given.
    """

    def __init__(self, prompt_length: int, hidden_size: int, init: torch.Tensor | None = None,
                 init_std: float = 0.02) -> None:
        super().__init__()
        _check_length(prompt_length)
        self.prompt = nn.Parameter(_init_prompt(init, prompt_length, hidden_size, init_std))

    def forward(self, z: torch.Tensor | None = None, batch_size: int | None = None) -> torch.Tensor:
        n = z.shape[0] if z is not None else (batch_size or 1)
        return self.prompt.unsqueeze(0).expand(n, -1, -1)


class MixturePrompt(nn.Module):
    """SS_MPk: P(z) = Σ_i w_i(z) P_i with w(z) = softmax(W_φ z) over k basis prompts.

    Args:
        prompt_length: number of soft tokens t.
        hidden_size: the backbone's embedding size d.
        context_dim: size d_e of the context vector z.
        num_basis: number of basis prompts k (the paper uses k = 2).
        init: optional [t, d] starting value shared by all bases (plus small noise to break symmetry).
        init_std: standard deviation of a random start when ``init`` is not given.
    """

    def __init__(self, prompt_length: int, hidden_size: int, context_dim: int, num_basis: int = 2,
                 init: torch.Tensor | None = None, init_std: float = 0.02) -> None:
        super().__init__()
        _check_length(prompt_length)
        if num_basis < 1:
            raise SynthtuneError(f"num_basis must be at least 1, got {num_basis}")
        base = _init_prompt(init, prompt_length, hidden_size, init_std)
        noise = torch.randn(num_basis, prompt_length, hidden_size) * (base.std() * 0.1 + 1e-8)
        self.bases = nn.Parameter(base.unsqueeze(0) + noise)
        self.mixer = nn.Linear(context_dim, num_basis)

    def forward(self, z: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        w = torch.softmax(self.mixer(z.to(self.mixer.weight.dtype)), dim=-1)  # Sec. 3, w = softmax(W_φ z)
        return torch.einsum("bk,ktd->btd", w, self.bases)  # Sec. 3, P = Σ_i w_i P_i


class MLPPrompt(nn.Module):
    """SS_MC: t independent MLPs F_φi: R^{d_e} → R^d, one per soft token, concatenated.

    The t MLPs are stored as stacked weight tensors and evaluated with one ``einsum`` per layer,
    so the cost is a few batched matmuls whatever t is.

    Args:
        prompt_length: number of soft tokens t.
        hidden_size: the backbone's embedding size d.
        context_dim: size d_e of the context vector z.
        mlp_hidden: width of each MLP's hidden layers (128 in the paper).
        mlp_layers: number of linear layers per MLP (3 in the paper).
        init: optional [t, d] starting value; it becomes the output bias, so at initialisation the
            prompt is close to ``init`` whatever z is.
        init_std: standard deviation of a random start when ``init`` is not given.
    """

    def __init__(self, prompt_length: int, hidden_size: int, context_dim: int, mlp_hidden: int = 128,
                 mlp_layers: int = 3, init: torch.Tensor | None = None, init_std: float = 0.02) -> None:
        super().__init__()
        _check_length(prompt_length)
        if mlp_layers < 1:
            raise SynthtuneError(f"mlp_layers must be at least 1, got {mlp_layers}")
        sizes = [context_dim] + [mlp_hidden] * (mlp_layers - 1) + [hidden_size]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        base = _init_prompt(init, prompt_length, hidden_size, init_std)
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            # The last layer starts small so P(z) ≈ init at first; inner layers use Kaiming-uniform.
            bound = (base.std().item() * 0.1 if last else 1.0) / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(prompt_length, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(base.clone() if last else torch.zeros(prompt_length, fan_out)))

    def forward(self, z: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        h = z.to(self.weights[0].dtype).unsqueeze(1).expand(-1, self.weights[0].shape[0], -1)  # [B, t, d_e]
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.einsum("bti,tio->bto", h, w) + b  # Sec. 3, F_φi applied to z for every token i at once
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h


def build_soft_prompt(parameterization: str, prompt_length: int, hidden_size: int, context_dim: int,
                      num_basis: int = 2, mlp_hidden: int = 128, mlp_layers: int = 3,
                      init: torch.Tensor | None = None) -> nn.Module:
    """The SoftSRV parameterization named ``np``, ``mp`` or ``mc``."""
    _check_length(prompt_length)
    if parameterization == "np":
        return NonParametricPrompt(prompt_length, hidden_size, init=init)
    if parameterization == "mp":
        return MixturePrompt(prompt_length, hidden_size, context_dim, num_basis=num_basis, init=init)
    if parameterization == "mc":
        return MLPPrompt(prompt_length, hidden_size, context_dim, mlp_hidden=mlp_hidden,
                         mlp_layers=mlp_layers, init=init)
    raise SynthtuneError(f"unknown parameterization {parameterization!r}; use one of {', '.join(PARAMETERIZATIONS)}")
