"""A 2-D picture of real vs synthetic embeddings: PCA to two dimensions, one scatter plot (PNG).

The PCA is fitted on both sets together so the two clouds share axes; up to ``max_points`` rows
of each set are drawn (a seeded random subset), so large files stay readable and fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_png


def _subset(features: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    if len(features) <= max_points:
        return features
    return features[np.sort(rng.choice(len(features), size=max_points, replace=False))]


def project_2d(real: np.ndarray, synthetic: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both sets projected on the first two principal components of their union.

    Returns:
        ``(real_2d, synthetic_2d, explained_variance_ratio)``.
    """
    from sklearn.decomposition import PCA

    real = np.asarray(real, dtype=np.float32)
    synthetic = np.asarray(synthetic, dtype=np.float32)
    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise SynthtuneError(
            f"embedding map needs two (n, d) arrays of equal d, got {real.shape} and {synthetic.shape}"
        )
    both = np.vstack([real, synthetic])
    if len(both) < 2:
        raise SynthtuneError("embedding map needs at least two points in total; add rows")
    components = min(2, both.shape[1], len(both))
    pca = PCA(n_components=components, random_state=seed).fit(both)
    projected = pca.transform(both)
    if components < 2:  # one-dimensional features: plot them against zero
        projected = np.hstack([projected, np.zeros((len(both), 2 - components))])
    ratio = np.zeros(2)
    ratio[:components] = pca.explained_variance_ratio_
    return projected[: len(real)], projected[len(real) :], ratio


def plot_embedding_map(
    real: np.ndarray,
    synthetic: np.ndarray,
    path: str | Path,
    title: str = "Real vs synthetic embeddings (PCA)",
    max_points: int = 5000,
    seed: int = 0,
    real_label: str = "real",
    synthetic_label: str = "synthetic",
) -> Path:
    """Save a PNG scatter of ``real`` and ``synthetic`` embeddings in 2-D; returns the path.

    Args:
        real: ``(n, d)`` embeddings of the real (reference) texts.
        synthetic: ``(m, d)`` embeddings of the synthetic texts.
        path: where to write the PNG (atomically).
        title: plot title.
        max_points: at most this many points of each set are drawn.
        seed: seed of the subsample and of PCA.
        real_label: legend label of the real set.
        synthetic_label: legend label of the synthetic set.
    """
    # The Agg canvas directly, not pyplot: no global backend switch, no GUI, nothing to close.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rng = np.random.default_rng(seed)
    real = _subset(np.asarray(real), max_points, rng)
    synthetic = _subset(np.asarray(synthetic), max_points, rng)
    real_2d, synth_2d, ratio = project_2d(real, synthetic, seed)
    fig = Figure(figsize=(6.5, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(real_2d[:, 0], real_2d[:, 1], s=6, alpha=0.45, c="tab:blue", label=f"{real_label} ({len(real)})")
    ax.scatter(synth_2d[:, 0], synth_2d[:, 1], s=6, alpha=0.45, c="tab:orange",
               label=f"{synthetic_label} ({len(synthetic)})")
    ax.set_xlabel(f"PC 1 ({ratio[0]:.1%} of variance)")
    ax.set_ylabel(f"PC 2 ({ratio[1]:.1%} of variance)")
    ax.set_title(title)
    ax.legend(loc="best", markerscale=3)
    fig.tight_layout()
    return atomic_write_png(fig, path)
