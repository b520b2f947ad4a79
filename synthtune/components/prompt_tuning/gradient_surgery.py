"""Gradient surgery for prompt tuning on real + synthetic data (Guo et al., Alg. 2).

One step of the algorithm takes the gradient of the real-data loss, ``δ_real``, and the gradient of
the synthetic-data loss, ``δ_syn``, over the trainable parameters only (the soft prompt; the LM is
frozen). When the two point in conflicting directions (``δ_syn · δ_real < 0``) the synthetic
gradient loses its component along ``δ_real``, so synthetic data can never pull the parameters
against what the real data asks for. The update is ``δ = δ_real + ε · δ'_syn``.

All vectors are treated as flat: the gradients of every parameter are concatenated into one
vector before the dot products, because the conflict test is about the whole update direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from synthtune.errors import SynthtuneError


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (fp32, bf16, fp16) is computed in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def project_conflicting(g_syn: Tensor, g_real: Tensor) -> tuple[Tensor, bool]:
    """Remove from ``g_syn`` its component along ``g_real`` when the two conflict.

    Args:
        g_syn: gradient of the synthetic-data loss (any shape; treated as a flat vector).
        g_real: gradient of the real-data loss, same number of elements as ``g_syn``.

    Returns:
        ``(g_syn_projected, conflicted)``: ``g_syn_projected`` has ``g_syn``'s shape; ``conflicted`` is
        True when ``g_syn · g_real < 0`` and the projection was applied. A zero ``g_real`` never
        conflicts (its dot product is 0), so ``g_syn`` is returned unchanged.
    """
    if g_syn.numel() != g_real.numel():
        raise SynthtuneError(
            f"gradient surgery needs gradients of equal size, got {g_syn.numel()} (synthetic) and "
            f"{g_real.numel()} (real) elements; pass gradients of the same parameters"
        )
    work = _work_dtype(g_syn.dtype)
    s = g_syn.reshape(-1).to(work)
    r = g_real.reshape(-1).to(work)
    dot = torch.dot(s, r)
    if not bool(dot < 0):
        return g_syn, False
    norm_sq = torch.dot(r, r)
    # dot < 0 implies ‖g_real‖ > 0 mathematically; the clamp only guards against underflow.
    norm_sq = norm_sq.clamp_min(torch.finfo(work).tiny)
    # Alg. 2, gradient projection: g'_syn = g_syn − (g_syn·g_real / ‖g_real‖²) g_real
    projected = s - (dot / norm_sq) * r
    return projected.to(g_syn.dtype).reshape(g_syn.shape), True


def combine(g_real: Tensor, g_syn: Tensor, eps: float) -> tuple[Tensor, bool]:
    """The surgery update ``δ = δ_real + ε · δ'_syn``.

    Args:
        g_real: gradient of the real-data loss.
        g_syn: gradient of the synthetic-data loss (same number of elements).
        eps: weight ε ≥ 0 of the (projected) synthetic gradient.

    Returns:
        ``(delta, conflicted)`` with ``delta`` shaped like ``g_real``.
    """
    eps = _check_eps(eps)
    projected, conflicted = project_conflicting(g_syn, g_real)
    # Alg. 2, combined update: δ = δ_real + ε δ'_syn
    delta = g_real + eps * projected.reshape(g_real.shape).to(g_real.dtype)
    return delta, conflicted


def _check_eps(eps: float) -> float:
    value = float(eps)
    if not math.isfinite(value) or value < 0:
        raise SynthtuneError(
            f"synthetic gradient weight eps must be a finite number >= 0, got {eps!r}; pass e.g. eps=1.0"
        )
    return value


def _flat_grads(loss: Tensor, params: Sequence[Tensor], retain_graph: bool, work: torch.dtype) -> Tensor:
    grads = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return torch.cat([
        (torch.zeros_like(p, dtype=work) if g is None else g.to(work)).reshape(-1)
        for p, g in zip(params, grads)
    ])


def surgery_step(
    params: Sequence[Tensor],
    loss_real: Tensor,
    loss_syn: Tensor,
    eps: float,
    all_reduce: bool = True,
    project: bool = True,
) -> dict[str, float | bool]:
    """Compute the gradient-surgery update and write it into each parameter's ``.grad``.

    With ``project=False`` it is the paired update without surgery, ``δ = δ_real + ε·δ_syn``, computed the
    same way (flat gradients, averaged across ranks); ``conflict`` then says whether surgery would have projected.

    The gradients are taken with :func:`torch.autograd.grad` over ``params`` only, so frozen modules
    receive no gradient and nothing is accumulated by the two backward passes themselves. Existing
    ``.grad`` values of ``params`` are overwritten (the projection is non-linear, so surgery
    updates cannot be accumulated over micro-batches by summing).

    Under DDP, call it on the unwrapped module's parameters (or inside ``ddp.no_sync()``): this
    function does its own all-reduce, of the raw gradients, before the projection.

    Args:
        params: the trainable parameters (each must have ``requires_grad=True``).
        loss_real: scalar loss on the real batch (a mean over the batch).
        loss_syn: scalar loss on the synthetic batch (a mean over the batch).
        eps: weight ε ≥ 0 of the projected synthetic gradient.
        all_reduce: average δ_real and δ_syn across ranks when ``torch.distributed`` is initialised.
        project: project a conflicting δ_syn (Alg. 2's surgery); ``False`` adds it as it is.

    Returns:
        ``{"conflict", "cosine", "dot", "norm_real", "norm_syn", "norm_syn_projected", "norm_update"}``
        (cosine is 0 when either gradient is zero).
    """
    eps = _check_eps(eps)
    params = list(params)
    if not params:
        raise SynthtuneError("surgery_step got no parameters; pass the trainable (soft-prompt) parameters")
    frozen = [i for i, p in enumerate(params) if not p.requires_grad]
    if frozen:
        raise SynthtuneError(
            f"surgery_step got parameters without requires_grad (positions {frozen}); pass only trainable parameters"
        )
    for name, loss in (("loss_real", loss_real), ("loss_syn", loss_syn)):
        if loss.numel() != 1:
            raise SynthtuneError(f"{name} must be a scalar, got shape {tuple(loss.shape)}; reduce it with .mean()")
    work = _work_dtype(params[0].dtype)
    # The two losses may share part of the graph (e.g. one forward of the prompt), so keep it once.
    g_real = _flat_grads(loss_real, params, retain_graph=True, work=work)
    g_syn = _flat_grads(loss_syn, params, retain_graph=False, work=work)

    if all_reduce and dist.is_available() and dist.is_initialized():
        # Average the RAW gradients across ranks before the conflict test and the projection.
        # The projection is non-linear in (δ_real, δ_syn): projecting on each rank and averaging
        # the results is not the projection of the averaged (global) gradient. Averaging first
        # makes multi-GPU training equal single-GPU training on the same global batch (given equal
        # per-rank batch sizes and losses that are means over the local batch). One collective
        # carries both vectors.
        stacked = torch.stack([g_real, g_syn])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= dist.get_world_size()
        g_real, g_syn = stacked[0], stacked[1]

    projected, conflicted = project_conflicting(g_syn, g_real)
    if not project:
        projected = g_syn
    # Alg. 2, combined update: δ = δ_real + ε δ'_syn
    delta = g_real + eps * projected

    offset = 0
    for p in params:
        n = p.numel()
        p.grad = delta[offset:offset + n].reshape(p.shape).to(p.dtype).clone()
        offset += n

    norm_real = float(g_real.norm())
    norm_syn = float(g_syn.norm())
    dot = float(torch.dot(g_syn, g_real))
    denom = norm_real * norm_syn
    return {
        "conflict": bool(conflicted),
        "cosine": dot / denom if denom > 0 else 0.0,
        "dot": dot,
        "norm_real": norm_real,
        "norm_syn": norm_syn,
        "norm_syn_projected": float(projected.norm()),
        "norm_update": float(delta.norm()),
    }
