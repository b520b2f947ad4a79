"""A 2-D picture of real vs synthetic embeddings (PNG): one panel per synthetic set, shared axes.

All sets are projected together (PCA, or t-SNE) so the clouds share axes. Each panel draws the
real (reference) points, one synthetic set and, optionally, a few marked real points (e.g. the
few-shot demonstrations). Up to ``max_points`` rows of each set are drawn (a seeded random subset),
so large files stay readable and fast. Used by ``score mauve`` (one panel) and ``synalign evaluate``
(before / after resampling).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from synthtune.components.projection import Projection, project_2d
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_png


def _subset(features: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    if len(features) <= max_points:
        return features
    return features[np.sort(rng.choice(len(features), size=max_points, replace=False))]


def plot_embedding_map(
    real: np.ndarray,
    panels: Mapping[str, np.ndarray],
    path: str | Path,
    title: str = "Real vs synthetic embeddings",
    method: Projection = "pca",
    marked: np.ndarray | None = None,
    real_label: str = "real",
    marked_label: str = "real (few-shot)",
    max_points: int = 5000,
    seed: int = 0,
) -> Path:
    """Save a PNG with one scatter panel per synthetic set over the real points; returns the path.

    Args:
        real: ``(n, d)`` embeddings of the real (reference) texts, drawn in every panel.
        panels: panel title → ``(m, d)`` embeddings of a synthetic set.
        path: where to write the PNG (atomically).
        title: figure title.
        method: ``pca`` or ``tsne``.
        marked: optional ``(k, d)`` real points drawn as crosses in every panel.
        real_label: legend label of ``real``.
        marked_label: legend label of ``marked``.
        max_points: at most this many points of each set are drawn.
        seed: seed of the subsample and of the projection.
    """
    if not panels:
        raise SynthtuneError("plot_embedding_map needs at least one synthetic set")
    # The Agg canvas directly, not pyplot: no global backend switch, no GUI, nothing to close.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rng = np.random.default_rng(seed)
    sets = [_subset(np.asarray(a), max_points, rng) for a in (real, *panels.values())]
    extra = [] if marked is None else [np.asarray(marked)]
    projected, ratio = project_2d(sets + extra, method, seed)
    real_2d, synthetic_2d = projected[0], projected[1: 1 + len(panels)]
    fig = Figure(figsize=(5.5 * len(panels), 5.0), dpi=120)
    FigureCanvasAgg(fig)
    for j, (name, points) in enumerate(zip(panels, synthetic_2d)):
        ax = fig.add_subplot(1, len(panels), j + 1)
        ax.scatter(real_2d[:, 0], real_2d[:, 1], s=6, alpha=0.45, c="tab:blue", label=f"{real_label} ({len(real_2d)})")
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.45, c="tab:orange", label=f"{name} ({len(points)})")
        if marked is not None:
            ax.scatter(projected[-1][:, 0], projected[-1][:, 1], s=14, c="black", marker="x",
                       label=f"{marked_label} ({len(projected[-1])})")
        if ratio is not None:
            ax.set_xlabel(f"PC 1 ({ratio[0]:.1%} of variance)")
            ax.set_ylabel(f"PC 2 ({ratio[1]:.1%} of variance)")
        ax.set_title(name)
        ax.legend(loc="best", markerscale=3, fontsize=7)
    fig.suptitle(f"{title} ({method.upper()})")
    fig.tight_layout()
    return atomic_write_png(fig, path)
