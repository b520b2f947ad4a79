"""MAUVE between two feature sets, averaged over k-means seeds (SoftSRV App. A.7).

Wraps ``mauve.compute_mauve`` from the optional, GPLv3-licensed ``mauve-text`` package, which is
imported only when a score is requested. Features are quantised into ``num_clusters`` k-means
buckets and the area under the divergence frontier of the two histograms is reported; the paper
repeats this for several seeds and gives mean and standard deviation.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from synthtune.errors import SynthtuneError

DEFAULT_MAUVE_CLUSTERS = 32
DEFAULT_MAUVE_SEEDS = (0, 1, 2)
AUTO_CLUSTERS = "auto"
AUTO_CLUSTERS_RULE = "max(2, round(n / 10)), n the smaller set's rows (mauve-text's own 'auto' heuristic)"
#: What the ± of a MAUVE score is, said wherever one is shown.
SPREAD_NOTE = "± is the spread over k-means seeds only, not over which rows were drawn"


def auto_clusters(n_p: int, n_q: int) -> int:
    """The k-means bucket count for sets of ``n_p`` and ``n_q`` rows: one bucket per 10 rows of the smaller set, at
    least 2 (:data:`AUTO_CLUSTERS_RULE`, what ``mauve.compute_mauve(num_buckets="auto")`` uses). A fixed count
    that suits thousands of rows leaves a few dozen rows one or two per bucket, and the score then mostly
    measures which rows were drawn."""
    return max(2, int(round(min(n_p, n_q) / 10)))


def require_mauve():
    """The ``mauve`` module, or a one-line SynthtuneError saying how to install the optional extra."""
    try:
        import mauve
    except ImportError:
        raise SynthtuneError(
            "MAUVE scoring needs the optional mauve-text package (GPLv3): pip install 'synthtune[mauve]'"
        ) from None
    return mauve


def _as_features(array: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(array, dtype=np.float32)
    if features.ndim != 2:
        raise SynthtuneError(f"{name} features must be a 2-D (n, d) array, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise SynthtuneError(f"{name} features contain NaN or inf; check the featuriser output")
    return features


def mauve_score(
    p_features: np.ndarray,
    q_features: np.ndarray,
    num_clusters: int = DEFAULT_MAUVE_CLUSTERS,
    seeds: Sequence[int] = DEFAULT_MAUVE_SEEDS,
    kmeans_num_redo: int = 5,
    kmeans_max_iter: int = 500,
) -> dict[str, Any]:
    """MAUVE(P, Q) for each seed, with mean and population standard deviation.

    Args:
        p_features: ``(n_p, d)`` features of the first set (e.g. synthetic texts).
        q_features: ``(n_q, d)`` features of the second set (e.g. real texts).
        num_clusters: k-means buckets; each set needs at least ``2 * num_clusters`` rows.
        seeds: k-means seeds; one score per seed.
        kmeans_num_redo: k-means restarts per seed (best objective kept).
        kmeans_max_iter: k-means iterations per restart.

    Returns:
        ``{"mean": float, "std": float, "per_seed": {seed: float}, "num_clusters": int, "n_p": int, "n_q": int}``.
    """
    p = _as_features(p_features, "synthetic")
    q = _as_features(q_features, "reference")
    if p.shape[1] != q.shape[1]:
        raise SynthtuneError(f"feature sizes differ ({p.shape[1]} vs {q.shape[1]}); featurise both sets the same way")
    if num_clusters < 2:
        raise SynthtuneError(f"MAUVE needs at least 2 clusters, got {num_clusters}; pass e.g. --clusters 32")
    need = 2 * num_clusters
    if min(len(p), len(q)) < need:
        raise SynthtuneError(
            f"MAUVE with {num_clusters} clusters needs at least {need} rows per set, got {len(p)} synthetic and "
            f"{len(q)} reference; add rows or lower --clusters"
        )
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise SynthtuneError("no MAUVE seeds given; pass --seeds 3 or more")
    mauve = require_mauve()
    per_seed: dict[int, float] = {}
    for seed in seeds:
        out = mauve.compute_mauve(
            p_features=p,
            q_features=q,
            num_buckets=int(num_clusters),
            kmeans_num_redo=int(kmeans_num_redo),
            kmeans_max_iter=int(kmeans_max_iter),
            device_id=-1,
            seed=seed,
            verbose=False,
        )
        per_seed[seed] = float(out.mauve)
    scores = np.array(list(per_seed.values()))
    return {
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "per_seed": per_seed,
        "num_clusters": int(num_clusters),
        "n_p": int(len(p)),
        "n_q": int(len(q)),
    }
