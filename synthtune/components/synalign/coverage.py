"""Coverage of a real pool by a selection, and a plot comparing selection strategies (SynAlign, Fig. 4).

A pool point counts as covered once some selected point lies within radius ``r`` of it (Euclidean
distance on the embeddings, or cosine distance ``1 − cos``). :func:`coverage_curve` gives the covered
fraction after each pick of a selection order; :func:`plot_coverage` draws several such curves
(e.g. GP exploration vs random sampling) into a PNG.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_png

Metric = Literal["euclidean", "cosine"]


def coverage_curve(embeddings: Tensor, selected_order: Sequence[int] | Tensor, r: float, metric: Metric = "euclidean") -> np.ndarray:
    """Fraction of pool points within ``r`` of some selected point, after each pick.

    Args:
        embeddings: the pool X [N, D].
        selected_order: pool rows in the order they were selected.
        r: coverage radius (>= 0), in the units of ``metric``.
        metric: ``"euclidean"`` or ``"cosine"`` (distance ``1 − cos``).

    Returns:
        A float array [len(selected_order)], non-decreasing, with values in [0, 1].
    """
    if embeddings.dim() != 2 or embeddings.shape[0] == 0:
        raise SynthtuneError(f"embeddings must be a non-empty [count, dim] tensor, got shape {tuple(embeddings.shape)}")
    if not (math.isfinite(r) and r >= 0):
        raise SynthtuneError(f"the coverage radius must be a non-negative number, got {r}")
    if metric not in ("euclidean", "cosine"):
        raise SynthtuneError(f"unknown coverage metric {metric!r}; use 'euclidean' or 'cosine'")
    order = torch.as_tensor(selected_order, dtype=torch.long).reshape(-1)
    n = embeddings.shape[0]
    if order.numel() and (int(order.min()) < 0 or int(order.max()) >= n):
        raise SynthtuneError(f"selected indices must lie in [0, {n - 1}] for a pool of {n} points")
    x = embeddings.detach().cpu().double()
    if metric == "cosine":
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sq_norms = (x * x).sum(1)
    covered = torch.zeros(n, dtype=torch.bool)
    curve = np.empty(order.numel(), dtype=np.float64)
    for t, i in enumerate(order.tolist()):
        if metric == "cosine":
            dist = 1.0 - x @ x[i]
        else:
            dist = (sq_norms + sq_norms[i] - 2.0 * (x @ x[i])).clamp_min_(0.0).sqrt_()
        dist[i] = 0.0  # the selected point covers itself whatever the rounding
        covered |= dist <= r
        curve[t] = float(covered.sum()) / n
    return curve


def plot_coverage(curves: Mapping[str, Sequence[float] | np.ndarray], path: str | os.PathLike, tau: float, r: float) -> Path:
    """Write a PNG with one coverage curve per strategy (x: points selected, y: fraction covered).

    Args:
        curves: strategy name -> coverage curve (from :func:`coverage_curve`).
        path: where the PNG goes (written atomically; folders are created).
        tau: the GP length scale, shown in the title.
        r: the coverage radius, shown in the title.

    Returns:
        The path written.
    """
    if not curves:
        raise SynthtuneError("plot_coverage needs at least one curve; pass e.g. {'gp': ..., 'random': ...}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, curve in curves.items():
        y = np.asarray(curve, dtype=np.float64)
        ax.plot(np.arange(1, len(y) + 1), y, label=f"{name} ({y[-1]:.3f})" if len(y) else name)
    ax.set_xlabel("points selected")
    ax.set_ylabel("fraction of pool covered")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"Pool coverage (tau={tau:.3g}, r={r:.3g})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return atomic_write_png(fig, path)


def kth_neighbour_scale(emb: Tensor, k: int, max_points: int = 2000, seed: int = 0) -> float:
    """Median distance from a point to its k-th nearest pool neighbour (over a seeded subsample of queries).

    With ``k = N / budget`` this is about the radius at which ``budget`` well-spread balls cover the pool,
    so it is the default GP length scale τ and coverage radius r.
    """
    x = emb.double()
    gen = torch.Generator().manual_seed(seed)
    queries = x[torch.randperm(x.shape[0], generator=gen)[:max_points]]
    # ||q - x||² = ||q||² - 2 q·x + ||x||²
    sq = ((queries * queries).sum(1, keepdim=True) - 2 * queries @ x.T + (x * x).sum(1)).clamp_min(0)
    k = max(1, min(k, x.shape[0] - 1))
    kth = sq.topk(k + 1, dim=1, largest=False).values[:, k].sqrt()  # column 0 is the point itself
    value = float(kth.median())
    if not value > 0:
        raise SynthtuneError("the pool embeddings are (nearly) all identical, so no scale can be chosen; "
                             "check the texts or pass --tau and --r explicitly")
    return value


def covering_radius(emb: Tensor, selected: Sequence[int]) -> float:
    """Largest distance from a pool point to its nearest selected point (smaller = the selection spans the pool)."""
    x = emb.double()
    s = x[torch.as_tensor(list(selected), dtype=torch.long)]
    # max_i min_j ||x_i - s_j||
    sq = ((x * x).sum(1, keepdim=True) - 2 * x @ s.T + (s * s).sum(1)).clamp_min(0)
    return float(sq.min(dim=1).values.max().sqrt())


def random_order(labels: np.ndarray, budgets: Mapping[int | None, int], gen: np.random.Generator) -> list[int]:
    """A random selection with the same per-label counts as ``budgets`` (``None``: any label), in random order:
    the baseline the GP selection's coverage is compared with."""
    picks: list[int] = []
    for key, count in budgets.items():
        rows = np.arange(len(labels)) if key is None else np.flatnonzero(labels == key)
        picks.extend(gen.choice(rows, size=count, replace=False).tolist())
    return gen.permutation(np.asarray(picks, dtype=np.int64)).tolist()
