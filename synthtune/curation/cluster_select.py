"""Cluster-balanced selection of synthetic examples (SoftSRV App. A.2).

The pipeline that :func:`curate` runs:

1. exact deduplication after case/whitespace normalisation (first occurrence kept);
2. optionally, n-gram decontamination against a reference set (App. A.3);
3. TF-IDF vectors reduced with truncated SVD (100 components) and clustered with mini-batch
   k-means (700 clusters);
4. round-robin selection: every round visits the clusters in a fresh random order and takes one
   not-yet-chosen example, uniformly at random, from each, until the target count is reached.

Every number is a parameter defaulting to the paper's value, and every random choice follows
``seed``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Sequence

import numpy as np

from synthtune.curation.decontaminate import DEFAULT_NGRAM, decontaminate
from synthtune.curation.dedup import dedup_indices
from synthtune.errors import SynthtuneError
from synthtune.records import require_fields

log = logging.getLogger(__name__)

DEFAULT_NUM_SAMPLES = 50_000
DEFAULT_SVD_COMPONENTS = 100
DEFAULT_CLUSTERS = 700
DEFAULT_BATCH_SIZE = 4096


def tfidf_svd_features(
    texts: Sequence[str], svd_components: int = DEFAULT_SVD_COMPONENTS, seed: int = 0
) -> tuple[np.ndarray, int]:
    """TF-IDF vectors of ``texts`` reduced by truncated SVD and L2-normalised (latent semantic analysis).

    Args:
        texts: the texts to embed.
        svd_components: the requested SVD rank; shrunk (with a warning) to fit fewer rows or a
            smaller vocabulary.
        seed: random state of the randomised SVD.

    Returns:
        ``(features, components)``: a float32 array of shape ``(len(texts), components)`` and the
        rank actually used (0 when the vocabulary was too small for SVD and the raw TF-IDF was kept).
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    try:
        tfidf = TfidfVectorizer(dtype=np.float32).fit_transform(texts)
    except ValueError:  # every text is empty or stop-word-free punctuation
        raise SynthtuneError("the texts contain no words to vectorise; check the --field holds text") from None
    rows, vocab = tfidf.shape
    # Truncated SVD needs a rank below both the vocabulary size and the row count.
    components = min(svd_components, vocab - 1, rows - 1)
    if components < svd_components:
        log.warning(
            "only %d rows and %d distinct words: reducing SVD components from %d to %d",
            rows, vocab, svd_components, max(components, 0),
        )
    if components < 1:
        return normalize(tfidf.toarray()).astype(np.float32), 0
    svd = TruncatedSVD(n_components=components, algorithm="randomized", n_iter=5, random_state=seed)
    reduced = svd.fit_transform(tfidf).astype(np.float32, copy=False)
    # LSA convention: unit-length rows, so k-means on them clusters by cosine similarity.
    return normalize(reduced).astype(np.float32, copy=False), components


def cluster_labels(
    features: np.ndarray, n_clusters: int = DEFAULT_CLUSTERS, seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Mini-batch k-means cluster index of every row of ``features``.

    Args:
        features: ``(n, d)`` array.
        n_clusters: number of clusters; must not exceed ``n`` (see :func:`curate`, which shrinks it).
        seed: random state of k-means.
        batch_size: mini-batch size.
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    # float64 on purpose: for float32 input, sklearn's k-means++ upcasts distance blocks chunk by
    # chunk, which made initialisation with 700 centres about 3x slower than one float64 GEMM.
    features = np.asarray(features, dtype=np.float64)
    n = features.shape[0]
    if not 1 <= n_clusters <= n:
        raise SynthtuneError(f"cannot make {n_clusters} clusters from {n} rows; use between 1 and {n} clusters")
    kmeans = MiniBatchKMeans(
        n_clusters=n_clusters,
        batch_size=batch_size,
        n_init=1,
        random_state=seed,
    )
    with warnings.catch_warnings():
        # Identical rows can leave fewer distinct centres than requested; that is harmless here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*init_size.*", category=RuntimeWarning)
        return kmeans.fit_predict(features).astype(np.int64)


def round_robin_select(labels: Sequence[int] | np.ndarray, num_samples: int, seed: int = 0) -> list[int]:
    """Indices chosen one per cluster per round until ``num_samples`` are chosen (App. A.2).

    Each round visits the non-exhausted clusters in a new random order and takes, from each, one
    member not chosen before, uniformly at random (so selection is without replacement).

    Args:
        labels: cluster index of every example.
        num_samples: how many to choose; capped at ``len(labels)``.
        seed: seed of the random orders.

    Returns:
        The chosen indices in the order they were chosen.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    target = min(int(num_samples), len(labels))
    queues: dict[int, list[int]] = {}
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        # A random order per cluster; popping from its end draws uniformly without replacement.
        queues[int(cluster)] = rng.permutation(members).tolist()
    chosen: list[int] = []
    active = sorted(queues)
    while len(chosen) < target:
        for cluster in rng.permutation(active).tolist():
            chosen.append(queues[cluster].pop())
            if len(chosen) == target:
                break
        active = [c for c in active if queues[c]]
    return chosen


def field_texts(rows: Sequence[Any], field: str, source: str) -> list[str]:
    """The texts of ``rows``: the rows themselves when they are strings, else each dict's ``field``."""
    if all(isinstance(row, str) for row in rows):
        return list(rows)
    if not all(isinstance(row, dict) for row in rows):
        raise SynthtuneError(f"{source}: rows must be all strings or all dicts; pass a list of one kind")
    require_fields(rows, [field], source)
    texts = []
    for index, row in enumerate(rows):
        value = row[field]
        if not isinstance(value, str):
            raise SynthtuneError(
                f"{source}: row {index} field {field!r} is {type(value).__name__}, not text; fix the data or --field"
            )
        texts.append(value)
    return texts


def curate(
    rows: Sequence[str] | Sequence[dict[str, Any]],
    num_samples: int = DEFAULT_NUM_SAMPLES,
    field: str = "text",
    svd_components: int = DEFAULT_SVD_COMPONENTS,
    n_clusters: int = DEFAULT_CLUSTERS,
    seed: int = 0,
    references: Sequence[str] | None = None,
    ngram: int = DEFAULT_NGRAM,
    batch_size: int = DEFAULT_BATCH_SIZE,
    broken_lines: int = 0,
    source: str = "input",
) -> tuple[list[Any], dict[str, Any]]:
    """Deduplicate, optionally decontaminate, cluster and select a diverse subset (App. A.2, A.3).

    Args:
        rows: texts, or dict rows whose ``field`` holds the text (kept whole in the output).
        num_samples: target size; when the pool is smaller, everything is kept with a warning.
        field: the text field of dict rows.
        svd_components: truncated-SVD rank of the TF-IDF vectors (paper: 100).
        n_clusters: mini-batch k-means clusters (paper: 700); shrunk to the pool size if larger.
        seed: seed of SVD, k-means and the round-robin draws.
        references: reference (test-set) texts for n-gram decontamination, or ``None`` to skip it.
        ngram: n-gram length for decontamination (paper: 13).
        batch_size: k-means mini-batch size.
        broken_lines: broken input lines the reader skipped (only echoed into the report).
        source: a name for the rows in error messages (e.g. the file path).

    Returns:
        ``(kept_rows, report)``: the selected rows in input order, and a dict of counts at each stage
        (``input``, ``broken_lines_skipped``, ``after_dedup``, ``decontaminated_dropped``,
        ``after_decontamination``, ``clusters``, ``clusters_used``, ``selected``, ``output``, ...).
    """
    if int(num_samples) < 1:
        raise SynthtuneError(f"num_samples must be at least 1, got {num_samples}; pass e.g. --num_samples 50000")
    if int(n_clusters) < 1 or int(svd_components) < 1:
        raise SynthtuneError("--clusters and --svd_components must be at least 1")
    if not rows:
        raise SynthtuneError(f"{source}: there are no rows to curate; check the input file")
    texts = field_texts(rows, field, source)
    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        log.warning(message)

    report: dict[str, Any] = {
        "input": len(texts) + broken_lines,
        "broken_lines_skipped": broken_lines,
        "rows_read": len(texts),
    }
    pool = dedup_indices(texts)
    report["after_dedup"] = len(pool)
    report["duplicates_removed"] = len(texts) - len(pool)

    if references is not None:
        result = decontaminate([texts[i] for i in pool], references, ngram)
        pool = [pool[i] for i in result.kept]
        report.update(
            ngram=ngram,
            decontaminated_dropped=len(result.dropped),
            contamination_rate=result.contamination_rate,
        )
    else:
        report.update(ngram=None, decontaminated_dropped=0, contamination_rate=None)
    report["after_decontamination"] = len(pool)
    if not pool:
        raise SynthtuneError(f"{source}: every row was dropped as contaminated; check the reference set and --ngram")

    if num_samples >= len(pool):
        if num_samples > len(pool):
            warn(
                f"asked for {num_samples} samples but only {len(pool)} remain after dedup/decontamination; "
                "keeping all"
            )
        chosen = list(pool)
        report.update(svd_components=0, clusters=0, clusters_used=0)
    else:
        k = int(n_clusters)
        if len(pool) < k:
            warn(f"only {len(pool)} rows for {k} clusters; using {len(pool)} clusters")
            k = len(pool)
        pool_texts = [texts[i] for i in pool]
        features, used = tfidf_svd_features(pool_texts, svd_components, seed)
        if used < svd_components:
            notes.append(f"SVD components reduced from {svd_components} to {used}")
        labels = cluster_labels(features, k, seed, batch_size)
        picked = round_robin_select(labels, num_samples, seed)
        chosen = [pool[i] for i in picked]
        report.update(
            svd_components=used,
            clusters=k,
            clusters_used=int(len(np.unique(labels[picked]))),
        )
    chosen.sort()
    report["selected"] = len(chosen)
    report["output"] = len(chosen)
    report["num_samples"] = int(num_samples)
    report["seed"] = seed
    report["warnings"] = notes
    return [rows[i] for i in chosen], report
