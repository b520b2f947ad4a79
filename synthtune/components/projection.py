"""Several sets of embeddings projected together into one shared 2-D map (PCA or t-SNE), so their clouds share
axes: what the embedding-map pictures (:mod:`synthtune.curation.embedding_map`) and the SynAlign coverage
picture (:mod:`synthtune.components.synalign.coverage`) draw."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from synthtune.errors import SynthtuneError

Projection = Literal["pca", "tsne"]


def project_2d(sets: Sequence[np.ndarray], method: Projection = "pca",
               seed: int = 0) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Every set projected into one shared 2-D map fitted on their union.

    Returns:
        ``(projected sets, explained variance ratio of the two axes)``; the ratio is ``None`` for t-SNE.
    """
    arrays = [np.asarray(s, dtype=np.float32) for s in sets]
    if any(a.ndim != 2 for a in arrays) or len({a.shape[1] for a in arrays}) != 1:
        raise SynthtuneError(f"embedding map needs (n, d) arrays of equal d, got {[a.shape for a in arrays]}")
    both = np.vstack(arrays)
    if len(both) < 2:
        raise SynthtuneError("embedding map needs at least two points in total; add rows")
    ratio: np.ndarray | None = None
    if method == "tsne":
        from sklearn.manifold import TSNE

        projected = TSNE(n_components=2, random_state=seed, init="pca",
                         perplexity=min(30.0, max(2.0, (len(both) - 1) / 3))).fit_transform(both)
    elif method == "pca":
        from sklearn.decomposition import PCA

        components = min(2, both.shape[1], len(both))
        pca = PCA(n_components=components, random_state=seed).fit(both)
        projected = pca.transform(both)
        if components < 2:  # one-dimensional features: plot them against zero
            projected = np.hstack([projected, np.zeros((len(both), 2 - components))])
        ratio = np.zeros(2)
        ratio[:components] = pca.explained_variance_ratio_
    else:
        raise SynthtuneError(f"unknown projection {method!r}; use pca or tsne")
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    return [projected[bounds[i]: bounds[i + 1]] for i in range(len(arrays))], ratio
