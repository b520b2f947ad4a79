"""Learned per-sample weights that align synthetic with real embeddings by MMD (SynAlign, Sec. 3.3).

Each synthetic sample gets a score ``g_Θ(e_i)`` from a small projection network (the paper's
projection matrices Θ: ``Linear(D, h) → tanh → Linear(h, 1)``); its weight is
``ω_i = softmax_i(g_Θ(e_i))``. Training minimises the weighted MMD² of
:func:`synthtune.components.synalign.mmd.weighted_mmd2` on minibatches, with the softmax taken over the
minibatch. Because the score function is shared by every sample, the global weights at the end are
``exp(g_Θ(e_i))`` normalised over all N synthetic samples (:meth:`SampleWeightNet.global_weights`),
which is what the minibatch softmaxes estimate.

:func:`resample` then draws a weighted subset (e.g. the synthetic rows kept for fine-tuning).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from synthtune.components.synalign.mmd import BandwidthSpec, check_embeddings, mmd2_from_kernels, rbf_kernel, resolve_bandwidths
from synthtune.errors import SynthtuneError


class SampleWeightNet(nn.Module):
    """Scores ``g_Θ(e)`` and softmax weights ``ω = softmax(g_Θ(e))`` for synthetic embeddings.

    The output layer starts at zero, so training starts from uniform weights (plain MMD).

    Args:
        dim: embedding dimension D.
        hidden: width h of the projection.
    """

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        if dim < 1 or hidden < 1:
            raise SynthtuneError(f"SampleWeightNet needs dim >= 1 and hidden >= 1, got dim={dim}, hidden={hidden}")
        self.dim = dim
        self.proj = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def scores(self, emb: Tensor) -> Tensor:
        """Unnormalised log-weights ``g_Θ(e_i)`` [n] for embeddings [n, D]."""
        if emb.dim() != 2 or emb.shape[1] != self.dim:
            raise SynthtuneError(f"SampleWeightNet expects embeddings of shape [n, {self.dim}], got {tuple(emb.shape)}")
        # Projection Θ: g(e) = W2 tanh(W1 e + b1) + b2
        return self.out(torch.tanh(self.proj(emb))).squeeze(-1)

    def forward(self, emb: Tensor) -> Tensor:
        """Weights ω [n] over the given (mini)batch: ``softmax_i(g_Θ(e_i))``."""
        return torch.softmax(self.scores(emb), dim=0)

    @torch.no_grad()
    def global_weights(self, emb: Tensor, chunk_size: int = 65536) -> Tensor:
        """Weights over all N rows: ``exp(g(e_i)) / Σ_j exp(g(e_j))``, scored in chunks (stable logsumexp)."""
        scores = torch.cat([self.scores(emb[i : i + chunk_size]) for i in range(0, emb.shape[0], chunk_size)])
        return torch.exp(scores - torch.logsumexp(scores, dim=0))


@dataclass
class WeightFitHistory:
    """What :func:`fit_mmd_weights` did.

    Attributes:
        loss: minibatch weighted MMD² at each step (before that step's update).
        uniform_loss: minibatch MMD² with uniform weights on the same minibatches (the baseline).
        bandwidths: the RBF bandwidths used.
        seconds: wall time of the fit.
        net: the trained :class:`SampleWeightNet` (to weight new synthetic samples).
    """

    loss: list[float] = field(default_factory=list)
    uniform_loss: list[float] = field(default_factory=list)
    bandwidths: list[float] = field(default_factory=list)
    seconds: float = 0.0
    net: SampleWeightNet | None = None


def _nan_error(what: str, step: int, lr: float) -> SynthtuneError:
    return SynthtuneError(f"the {what} became NaN or inf at step {step}; lower the learning rate (lr={lr:g}) and rerun")


def fit_mmd_weights(
    syn: Tensor,
    real: Tensor,
    steps: int = 300,
    batch_syn: int = 1024,
    batch_real: int = 1024,
    lr: float = 1e-2,
    bandwidth: BandwidthSpec = "median",
    seed: int = 0,
    hidden: int = 64,
) -> tuple[Tensor, WeightFitHistory]:
    """Learn ω over the synthetic rows that minimises weighted MMD² to the real rows (Adam, minibatches).

    Each step draws ``batch_syn`` synthetic and ``batch_real`` real rows (without replacement,
    seeded), computes ``ω = softmax(g_Θ(e))`` over the synthetic minibatch and takes a gradient step
    on :func:`weighted_mmd2`. Memory is O(batch²), so N = 100K synthetic rows are fine.

    Args:
        syn: synthetic embeddings [N, D].
        real: real embeddings [M, D].
        steps: optimisation steps.
        batch_syn: synthetic rows per step (capped at N).
        batch_real: real rows per step (capped at M).
        lr: Adam learning rate.
        bandwidth: see :func:`synthtune.components.synalign.mmd.resolve_bandwidths`; fixed before training.
        seed: seed of the network initialisation, the minibatches and the median subsample.
        hidden: width of the projection network.

    Returns:
        ``(weights [N] summing to 1, history)``.
    """
    check_embeddings(syn, real)
    if steps < 1 or batch_syn < 1 or batch_real < 1:
        raise SynthtuneError(f"steps, batch_syn and batch_real must be >= 1, got {steps}, {batch_syn}, {batch_real}")
    if not math.isfinite(lr) or lr <= 0:
        raise SynthtuneError(f"the learning rate must be a positive number, got {lr}")
    for name, x in (("synthetic", syn), ("real", real)):
        if not torch.isfinite(x).all():
            raise SynthtuneError(f"the {name} embeddings contain NaN or inf; re-embed the texts or drop those rows")
    start = time.perf_counter()
    syn = syn.detach().float()
    real = real.detach().float()
    bandwidths = resolve_bandwidths(bandwidth, syn, real, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SampleWeightNet(syn.shape[1], hidden=hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    bs, br = min(batch_syn, syn.shape[0]), min(batch_real, real.shape[0])
    history = WeightFitHistory(bandwidths=bandwidths, net=net)
    uniform = torch.full((bs,), 1.0 / bs)
    for step in range(steps):
        si = torch.randperm(syn.shape[0], generator=gen)[:bs]
        ri = torch.randperm(real.shape[0], generator=gen)[:br]
        s_b, r_b = syn[si], real[ri]
        with torch.no_grad():  # the kernels do not depend on Θ; only ω carries gradients
            k_ss = rbf_kernel(s_b, s_b, bandwidths)
            k_sr = rbf_kernel(s_b, r_b, bandwidths)
            k_rr = rbf_kernel(r_b, r_b, bandwidths)
        w = net(s_b)
        if not torch.isfinite(w).all():
            raise _nan_error("sample weights", step, lr)
        loss = mmd2_from_kernels(k_ss, k_sr, k_rr, w)  # same value as weighted_mmd2(s_b, r_b, bandwidths, w)
        if not torch.isfinite(loss):
            raise _nan_error("MMD loss", step, lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.loss.append(float(loss.detach()))
        with torch.no_grad():
            history.uniform_loss.append(float(mmd2_from_kernels(k_ss, k_sr, k_rr, uniform)))
    weights = net.global_weights(syn)
    if not torch.isfinite(weights).all():
        raise _nan_error("sample weights", steps, lr)
    history.seconds = time.perf_counter() - start
    return weights, history


def per_label_weights(scores: Tensor, labels: Tensor) -> Tensor:
    """Global weights that keep each label's share of the rows: ω_i = (N_c / N) · softmax_{j ∈ c}(g_j)_i.

    Args:
        scores: g_Θ(e_i) [N].
        labels: integer label per row [N].

    Returns:
        ω [N], summing to 1, with label c's weights summing to N_c / N.
    """
    if scores.shape != labels.shape or scores.dim() != 1:
        raise SynthtuneError(f"scores and labels must be 1-D and of one length, got {tuple(scores.shape)} and {tuple(labels.shape)}")
    weights = torch.empty_like(scores, dtype=torch.float64)
    n = scores.shape[0]
    for label in torch.unique(labels).tolist():
        rows = labels == label
        # ω_i = N_c/N · exp(g_i) / Σ_{j∈c} exp(g_j)
        weights[rows] = torch.softmax(scores[rows].double(), dim=0) * (int(rows.sum()) / n)
    return weights.to(scores.dtype)


def resample(weights: Tensor, n: int, replace: bool, seed: int = 0) -> Tensor:
    """Draw ``n`` row indices with probability proportional to ``weights`` (seeded ``torch.multinomial``).

    Args:
        weights: non-negative weights [N] (need not sum to 1).
        n: number of indices to draw.
        replace: draw with replacement; without it, ``n`` must not exceed the number of non-zero weights.
        seed: seed of the draw.

    Returns:
        A LongTensor [n] of indices into ``weights``.
    """
    if weights.dim() != 1 or weights.numel() == 0:
        raise SynthtuneError(f"weights must be a non-empty 1-D tensor, got shape {tuple(weights.shape)}")
    w = weights.detach().double().cpu()
    if not torch.isfinite(w).all() or (w < 0).any():
        raise SynthtuneError("weights must be finite and non-negative; refit them with a lower learning rate")
    nonzero = int((w > 0).sum())
    if nonzero == 0:
        raise SynthtuneError("all weights are zero, so nothing can be drawn; refit the weights")
    if n < 0:
        raise SynthtuneError(f"cannot draw a negative number of samples ({n})")
    if not replace and n > nonzero:
        raise SynthtuneError(
            f"cannot draw {n} samples without replacement from {nonzero} non-zero weights; "
            f"lower n to at most {nonzero} or set replace=True"
        )
    if n == 0:
        return torch.empty(0, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    return torch.multinomial(w, n, replacement=replace, generator=gen)
