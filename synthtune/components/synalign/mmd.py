"""Weighted maximum mean discrepancy (MMD) between synthetic and real embeddings (SynAlign, Sec. 3.3).

The estimator is the *biased* V-statistic (diagonal terms included), so it is always >= 0 and is
exactly 0 for identical sets::

    MMD²(ω) = Σ_ij ω_i ω_j k(s_i, s_j) − 2 Σ_i Σ_j ω_i (1/m) k(s_i, r_j) + (1/m²) Σ_ij k(r_i, r_j)

with an RBF kernel ``k(a, b) = exp(−‖a − b‖² / (2 h²))``. Several bandwidths ``h`` may be given;
the kernel is then the mean of the RBF kernels (so ``k(a, a) = 1`` still). The bandwidth comes from
the median heuristic (median pairwise distance over a seeded subsample of both sets), a mixture
around it (``"mixture"`` = median × {0.5, 1, 2}), or explicit numbers.

Sets too large for a full kernel matrix use :func:`mmd2_minibatch`, a Monte-Carlo average of the
same statistic over seeded minibatches (weights renormalised inside each minibatch).
"""

from __future__ import annotations

import logging
import math
from typing import Sequence, Union

import torch
from torch import Tensor

from synthtune.errors import SynthtuneError

log = logging.getLogger(__name__)

#: ``"median"``, ``"mixture"``, one positive bandwidth, or a list of positive bandwidths.
BandwidthSpec = Union[str, float, Sequence[float]]

#: Multipliers of the median distance used by the ``"mixture"`` bandwidth.
MIXTURE_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0)


def check_embeddings(syn: Tensor, real: Tensor) -> None:
    """Raise :class:`SynthtuneError` unless ``syn`` [n, D] and ``real`` [m, D] are usable together."""
    for name, x in (("synthetic", syn), ("real", real)):
        if not isinstance(x, Tensor):
            raise SynthtuneError(f"{name} embeddings must be a torch.Tensor, got {type(x).__name__}; convert with torch.as_tensor")
        if x.dim() != 2:
            raise SynthtuneError(f"{name} embeddings must be a 2-D [count, dim] tensor, got shape {tuple(x.shape)}; stack one vector per row")
        if x.shape[0] == 0:
            raise SynthtuneError(f"{name} embeddings are empty; pass at least one row")
    if syn.shape[1] != real.shape[1]:
        raise SynthtuneError(
            f"synthetic embeddings have dimension {syn.shape[1]} but real ones {real.shape[1]}; "
            "embed both sets with the same encoder"
        )


def pairwise_sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ``‖a_i − b_j‖²`` as an [n, m] matrix (clamped at 0)."""
    sq = (a @ b.T).mul_(-2.0).add_((a * a).sum(1, keepdim=True)).add_((b * b).sum(1).unsqueeze(0))
    return sq.clamp_min_(0.0)


def median_heuristic(x: Tensor, y: Tensor | None = None, max_points: int = 2000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance over a seeded subsample of the rows of ``x`` (and ``y``).

    Args:
        x: embeddings [n, D].
        y: optional second set [m, D], pooled with ``x``.
        max_points: size of the subsample the median is taken over (``max_points²/2`` distances).
        seed: seed of the subsample.

    Raises:
        SynthtuneError: when all embeddings are identical (every distance is 0).
    """
    pool = x if y is None else torch.cat([x, y.to(x.dtype)], dim=0)
    pool = pool.detach().to(torch.float32 if pool.dtype in (torch.float16, torch.bfloat16) else pool.dtype)
    if pool.shape[0] < 2:
        raise SynthtuneError("the median heuristic needs at least 2 embeddings; pass more rows or an explicit bandwidth")
    if pool.shape[0] > max_points:
        gen = torch.Generator().manual_seed(seed)
        pool = pool[torch.randperm(pool.shape[0], generator=gen)[:max_points]]
    iu = torch.triu_indices(pool.shape[0], pool.shape[0], offset=1)
    dists = pairwise_sq_dists(pool, pool)[iu[0], iu[1]].sqrt()
    med = float(dists.median())
    if med > 0.0:
        return med
    positive = dists[dists > 0]
    if positive.numel() == 0:
        raise SynthtuneError(
            "the embeddings are all identical, so the median-heuristic bandwidth is 0; "
            "check the embedding step or pass an explicit positive bandwidth"
        )
    log.warning("over half of the embedding pairs are duplicates; the bandwidth uses the median of the non-zero distances")
    return float(positive.median())


def resolve_bandwidths(spec: BandwidthSpec, syn: Tensor, real: Tensor, max_points: int = 2000, seed: int = 0) -> list[float]:
    """Turn a bandwidth spec into a list of positive RBF bandwidths.

    Args:
        spec: ``"median"`` (median heuristic), ``"mixture"`` (median × {0.5, 1, 2}), a positive
            number, or a list of positive numbers.
        syn: synthetic embeddings [n, D] (used by the heuristics).
        real: real embeddings [m, D] (used by the heuristics).
        max_points: subsample size of the median heuristic.
        seed: seed of the median-heuristic subsample.
    """
    check_embeddings(syn, real)
    if isinstance(spec, str):
        if spec == "median":
            return [median_heuristic(syn, real, max_points=max_points, seed=seed)]
        if spec == "mixture":
            med = median_heuristic(syn, real, max_points=max_points, seed=seed)
            return [med * s for s in MIXTURE_SCALES]
        raise SynthtuneError(f"unknown bandwidth {spec!r}; use 'median', 'mixture', a positive number or a list of them")
    values = [float(spec)] if isinstance(spec, (int, float)) else [float(v) for v in spec]
    if not values or any(not math.isfinite(v) or v <= 0.0 for v in values):
        raise SynthtuneError(f"bandwidths must be positive finite numbers, got {values}; pass e.g. 'median' or [0.5, 1.0]")
    return values


def rbf_kernel(a: Tensor, b: Tensor, bandwidths: Sequence[float]) -> Tensor:
    """Mean over ``bandwidths`` of ``exp(−‖a_i − b_j‖² / (2 h²))`` as an [n, m] matrix."""
    sq = pairwise_sq_dists(a, b)
    if len(bandwidths) == 1:
        h = float(bandwidths[0])
        return sq.mul_(-0.5 / (h * h)).exp_()
    out = torch.exp(sq * (-0.5 / (bandwidths[0] * bandwidths[0])))
    for h in bandwidths[1:]:
        out = out + torch.exp(sq * (-0.5 / (h * h)))
    return out / len(bandwidths)


def weighted_mmd2(syn: Tensor, real: Tensor, bandwidths: Sequence[float], weights: Tensor | None = None) -> Tensor:
    """Weighted biased (V-statistic) MMD² between weighted ``syn`` and uniformly weighted ``real``.

    Differentiable in ``weights`` (the embeddings are treated as constants), so a training step can
    minimise it directly.

    Args:
        syn: synthetic embeddings [n, D].
        real: real embeddings [m, D].
        bandwidths: RBF bandwidths (see :func:`resolve_bandwidths`).
        weights: ω [n], normally non-negative and summing to 1; ``None`` means uniform 1/n.

    Returns:
        A 0-d tensor.
    """
    check_embeddings(syn, real)
    if weights is None:
        weights = torch.full((syn.shape[0],), 1.0 / syn.shape[0], dtype=syn.dtype, device=syn.device)
    elif weights.shape != (syn.shape[0],):
        raise SynthtuneError(f"weights must have shape ({syn.shape[0]},) to match the synthetic embeddings, got {tuple(weights.shape)}")
    real = real.to(syn.dtype)
    k_ss = rbf_kernel(syn, syn, bandwidths)
    k_sr = rbf_kernel(syn, real, bandwidths)
    k_rr = rbf_kernel(real, real, bandwidths)
    return mmd2_from_kernels(k_ss, k_sr, k_rr, weights.to(syn.dtype))


def mmd2_from_kernels(k_ss: Tensor, k_sr: Tensor, k_rr: Tensor, weights: Tensor) -> Tensor:
    """Weighted MMD² from precomputed kernel matrices K_ss [n, n], K_sr [n, m], K_rr [m, m] and ω [n]."""
    m = k_rr.shape[0]
    # Weighted MMD² (V-statistic): ωᵀK_ssω − 2/m ωᵀK_sr1 + 1/m² 1ᵀK_rr1
    return weights @ k_ss @ weights - 2.0 / m * (weights @ k_sr.sum(1)) + k_rr.sum() / (m * m)


def label_conditional_mmd2(k_ss: Tensor, k_sr: Tensor, k_rr: Tensor, scores: Tensor, syn_labels: Tensor,
                          real_labels: Tensor) -> Tensor:
    """Label-aware weighted MMD²: Σ_c p_c · MMD²_c, each label's synthetic rows against that label's real rows.

    Within label c the weights are ``softmax(scores)`` over the synthetic rows of c, so each label keeps its
    mass and the weights only choose among a label's rows. ``p_c`` is label c's share of the synthetic
    rows, over the labels that have both synthetic and real rows here (labels without real rows are left
    out of this estimate).

    Args:
        k_ss: K(syn, syn) [n, n]. k_sr: K(syn, real) [n, m]. k_rr: K(real, real) [m, m].
        scores: g_Θ(e_i) [n] (unnormalised log-weights).
        syn_labels: integer label per synthetic row [n]. real_labels: integer label per real row [m].

    Returns:
        A 0-d tensor, differentiable in ``scores``.
    """
    terms, sizes = [], []
    for label in torch.unique(syn_labels).tolist():
        s, r = syn_labels == label, real_labels == label
        if not bool(r.any()):
            continue
        w = torch.softmax(scores[s], dim=0)  # ω within label c
        terms.append(mmd2_from_kernels(k_ss[s][:, s], k_sr[s][:, r], k_rr[r][:, r], w))
        sizes.append(int(s.sum()))
    if not terms:
        return scores.sum() * 0.0  # no label has real rows in this batch: nothing to align
    shares = torch.tensor(sizes, dtype=scores.dtype, device=scores.device) / sum(sizes)
    # Σ_c p_c MMD²_c
    return (torch.stack(terms) * shares).sum()


def mmd2_minibatch(
    syn: Tensor,
    real: Tensor,
    bandwidths: Sequence[float],
    weights: Tensor | None = None,
    batch_syn: int = 2048,
    batch_real: int = 2048,
    num_batches: int = 8,
    seed: int = 0,
) -> float:
    """Monte-Carlo weighted MMD² for sets too large for a full kernel matrix.

    Each of ``num_batches`` rounds draws (without replacement, seeded) ``batch_syn`` synthetic and
    ``batch_real`` real rows, renormalises ``weights`` over the drawn synthetic rows and evaluates
    :func:`weighted_mmd2`; the mean over rounds is returned. Its bias relative to the full
    V-statistic shrinks like 1/batch size.

    Args:
        syn: synthetic embeddings [n, D].
        real: real embeddings [m, D].
        bandwidths: RBF bandwidths.
        weights: ω [n] (non-negative); ``None`` means uniform.
        batch_syn: synthetic rows per round (capped at n).
        batch_real: real rows per round (capped at m).
        num_batches: number of rounds.
        seed: seed of the row draws.
    """
    check_embeddings(syn, real)
    if batch_syn < 1 or batch_real < 1 or num_batches < 1:
        raise SynthtuneError("batch_syn, batch_real and num_batches must all be >= 1")
    if weights is not None and weights.shape != (syn.shape[0],):
        raise SynthtuneError(f"weights must have shape ({syn.shape[0]},) to match the synthetic embeddings, got {tuple(weights.shape)}")
    gen = torch.Generator().manual_seed(seed)
    bs, br = min(batch_syn, syn.shape[0]), min(batch_real, real.shape[0])
    total = 0.0
    with torch.no_grad():
        for _ in range(num_batches):
            si = torch.randperm(syn.shape[0], generator=gen)[:bs].to(syn.device)
            ri = torch.randperm(real.shape[0], generator=gen)[:br].to(real.device)
            w = None
            if weights is not None:
                w = weights[si].to(syn.dtype)
                mass = w.sum()
                if not torch.isfinite(mass) or mass <= 0:
                    raise SynthtuneError("a minibatch drew only zero weights; use larger batches or check that the weights are positive")
                w = w / mass
            total += float(weighted_mmd2(syn[si], real[ri], bandwidths, w))
    return total / num_batches
