"""Coverage of a real pool by a selection, and plots comparing selection strategies (SynAlign, Figs. 4-5).

Two measures:

* ball coverage: a pool point counts as covered once some selected point lies within radius ``r``
  of it (Euclidean distance on the embeddings, or cosine distance ``1 − cos``); :func:`coverage_curve`;
* convex-hull coverage, as the paper measures it: the area of the convex hull of the selected
  points over the area of the hull of the whole pool, both in the pool's 2-D PCA projection;
  :func:`hull_coverage_curve`.

Each curve gives the value after each pick of a selection order; :func:`plot_coverage` draws them
per strategy (e.g. GP exploration vs random sampling) and :func:`plot_tau_sweep` draws the final
coverage against the GP length scale τ.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from synthtune.components.projection import project_2d
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


def pool_projection(embeddings: Tensor | np.ndarray, seed: int = 0) -> np.ndarray:
    """The pool's 2-D PCA projection [N, 2] (the plane the convex-hull coverage is measured in)."""
    x = embeddings.detach().cpu().numpy() if isinstance(embeddings, Tensor) else np.asarray(embeddings)
    (points,), _ = project_2d([x], "pca", seed=seed)
    return np.asarray(points, dtype=np.float64)


def hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2-D ``points`` (0 for fewer than 3 points or points on a line)."""
    from scipy.spatial import ConvexHull, QhullError

    points = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)
    if len(points) < 3:
        return 0.0
    try:
        return float(ConvexHull(points).volume)  # in 2-D, a hull's "volume" is its area
    except QhullError:  # all points on one line
        return 0.0


def hull_coverage_curve(points: np.ndarray, selected_order: Sequence[int] | Tensor) -> np.ndarray:
    """Area of the selected points' convex hull over the pool's hull area, after each pick.

    Args:
        points: the pool in 2-D [N, 2] (e.g. :func:`pool_projection`).
        selected_order: pool rows in the order they were selected.

    Returns:
        A float array [len(selected_order)], non-decreasing, in [0, 1] (1 once the selection holds
        every vertex of the pool's hull).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise SynthtuneError(f"hull coverage needs 2-D points [count, 2], got shape {points.shape}; project the pool first")
    order = np.asarray(torch.as_tensor(selected_order, dtype=torch.long).reshape(-1))
    if order.size and (order.min() < 0 or order.max() >= len(points)):
        raise SynthtuneError(f"selected indices must lie in [0, {len(points) - 1}] for a pool of {len(points)} points")
    total = hull_area(points)
    if total <= 0:
        raise SynthtuneError("the pool's 2-D projection has no area (fewer than 3 distinct points, or all on a line); "
                             "add pool rows")
    curve = np.zeros(order.size, dtype=np.float64)
    area = 0.0
    for t in range(order.size):
        if t >= 2:  # the hull only grows when the new point lies outside it, but recomputing is simple and cheap
            area = hull_area(points[order[: t + 1]])
        curve[t] = area / total  # coverage = area(hull(S_t)) / area(hull(pool))
    return curve


def _figure(panels: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0 * panels, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def plot_coverage(curves: Mapping[str, Sequence[float] | np.ndarray], path: str | os.PathLike, tau: float, r: float,
                  hull_curves: Mapping[str, Sequence[float] | np.ndarray] | None = None) -> Path:
    """Write a PNG with one coverage curve per strategy (x: points selected, y: fraction covered); with
    ``hull_curves``, a second panel shows the convex-hull coverage of the same strategies.

    Args:
        curves: strategy name -> ball coverage curve (from :func:`coverage_curve`).
        path: where the PNG goes (written atomically; folders are created).
        tau: the GP length scale, shown in the title.
        r: the coverage radius, shown in the title.
        hull_curves: strategy name -> convex-hull coverage curve (from :func:`hull_coverage_curve`).

    Returns:
        The path written.
    """
    if not curves:
        raise SynthtuneError("plot_coverage needs at least one curve; pass e.g. {'gp': ..., 'random': ...}")
    panels = [(curves, "fraction of pool within r", f"Ball coverage (tau={tau:.3g}, r={r:.3g})")]
    if hull_curves:
        panels.append((hull_curves, "hull area / pool hull area", f"Convex-hull coverage, 2-D PCA (tau={tau:.3g})"))
    fig = _figure(len(panels))
    for k, (series, ylabel, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for name, curve in series.items():
            y = np.asarray(curve, dtype=np.float64)
            ax.plot(np.arange(1, len(y) + 1), y, label=f"{name} ({y[-1]:.3f})" if len(y) else name)
        ax.set_xlabel("points selected")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0.0, 1.02)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    return atomic_write_png(fig, path)


def plot_tau_sweep(taus: Sequence[float], series: Mapping[str, Sequence[float]], path: str | os.PathLike,
                   budget: int, baselines: Mapping[str, float] | None = None) -> Path:
    """Write a PNG of final coverage against the GP length scale τ (log axis), one line per measure.

    Args:
        taus: the swept length scales.
        series: measure name (e.g. ``ball (r=0.8)``, ``convex hull``) -> coverage at each τ.
        path: where the PNG goes (written atomically).
        budget: the selection size, shown in the title.
        baselines: name -> a coverage that does not depend on τ (e.g. random selection), drawn dashed.
    """
    if not taus or not series:
        raise SynthtuneError("plot_tau_sweep needs at least one tau and one measure")
    fig = _figure(1)
    ax = fig.add_subplot(1, 1, 1)
    for name, values in series.items():
        ax.plot(list(taus), list(values), marker="o", label=name)
    for name, value in (baselines or {}).items():
        ax.axhline(value, linestyle="--", linewidth=1.0, color="0.4" if "ball" in name else "0.7", label=f"{name} ({value:.3f})")
    ax.set_xscale("log")
    ax.set_xticks(list(taus), [f"{t:.3g}" for t in taus])
    ax.minorticks_off()
    ax.set_xlabel("GP length scale tau")
    ax.set_ylabel("coverage")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"Coverage of {budget} GP-selected points against tau")
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
