"""Curation and scoring of synthetic data (SoftSRV App. A.2, A.3, A.7).

* :func:`curate`: exact dedup, optional n-gram decontamination, TF-IDF/SVD/k-means clustering and
  round-robin selection of a diverse subset.
* :func:`decontaminate`: drop texts sharing a 13-gram with a reference set.
* :func:`mauve_score`: MAUVE mean ± std over k-means seeds (optional ``mauve-text`` extra).
* :func:`plot_embedding_map`: PNG of real vs synthetic embeddings in 2-D.

Text features come from :func:`synthtune.components.encoders.featurize`.

The commands (``synthtune curate``, ``decontaminate``, ``score mauve``) live in :mod:`synthtune.commands`.
"""

from synthtune.curation.cluster_select import (
    cluster_labels,
    curate,
    field_texts,
    round_robin_select,
    tfidf_svd_features,
)
from synthtune.curation.decontaminate import (
    DecontaminationResult,
    decontaminate,
    is_contaminated,
    reference_ngrams,
)
from synthtune.curation.dedup import dedup_exact, dedup_indices
from synthtune.curation.embedding_map import plot_embedding_map, project_2d
from synthtune.curation.mauve_score import mauve_score
from synthtune.curation.normalize import ngram_tokens, normalize_for_dedup, normalize_for_ngrams

__all__ = [
    "DecontaminationResult",
    "cluster_labels",
    "curate",
    "decontaminate",
    "dedup_exact",
    "dedup_indices",
    "field_texts",
    "is_contaminated",
    "mauve_score",
    "ngram_tokens",
    "normalize_for_dedup",
    "normalize_for_ngrams",
    "plot_embedding_map",
    "project_2d",
    "reference_ngrams",
    "round_robin_select",
    "tfidf_svd_features",
]
