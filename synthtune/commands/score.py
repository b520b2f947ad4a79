"""``synthtune score METRIC``: score synthetic data against real data (``mauve``: SoftSRV App. A.7)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from synthtune.commands.files import check_distinct, read_input, reference_texts
from synthtune.components.encoders import DEFAULT_FEATURIZER, featurize
from synthtune.curation.cluster_select import field_texts
from synthtune.curation.embedding_map import plot_embedding_map
from synthtune.curation.mauve_score import DEFAULT_MAUVE_CLUSTERS, mauve_score, require_mauve
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_json


def _subsample(texts: list[str], max_samples: int | None, rng: np.random.Generator) -> list[str]:
    if max_samples is None or len(texts) <= max_samples:
        return texts
    return [texts[i] for i in np.sort(rng.choice(len(texts), size=max_samples, replace=False))]


def mauve(
    synthetic: str,
    reference: str,
    field: str = "text",
    reference_field: Optional[str] = None,
    featurizer: str = DEFAULT_FEATURIZER,
    clusters: int = DEFAULT_MAUVE_CLUSTERS,
    seeds: int = 3,
    kmeans_num_redo: int = 5,
    kmeans_max_iter: int = 500,
    max_samples: Optional[int] = None,
    seed: int = 0,
    output: Optional[str] = None,
    plot: Optional[str] = None,
    no_plot: bool = False,
    no_cache: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """MAUVE between synthetic and real texts, mean ± std over k-means seeds (SoftSRV App. A.7).

    Needs ``pip install 'synthtune[mauve]'``. Writes a JSON report and a 2-D embedding map.

    Args:
        synthetic: synthetic rows (JSONL).
        reference: real rows to compare with (JSONL).
        field: text field of the synthetic rows.
        reference_field: text field of the reference rows (default: field).
        featurizer: minilm, smollm2-135m, or a causal LM name/folder.
        clusters: MAUVE k-means buckets.
        seeds: number of k-means seeds 0..N-1.
        kmeans_num_redo: k-means restarts per seed.
        kmeans_max_iter: k-means iterations.
        max_samples: score a random subset of at most N rows from each file.
        seed: seed of the max_samples subset and the plot.
        output: JSON report (default: <synthetic>.mauve.json).
        plot: 2-D embedding map PNG (default: <synthetic>.mauve.png).
        no_plot: skip the embedding map.
        no_cache: recompute features instead of using the cache.
        strict: fail on broken JSON lines instead of skipping them.
    """
    start = time.perf_counter()
    if seeds < 1:
        raise SynthtuneError(f"--seeds must be at least 1, got {seeds}")
    if max_samples is not None and max_samples < 1:
        raise SynthtuneError(f"--max_samples must be at least 1, got {max_samples}")
    require_mauve()  # fail before any featurisation when the optional extra is missing
    synthetic_path = Path(synthetic)
    stem = synthetic_path.with_suffix("")
    report_file = Path(output) if output else Path(f"{stem}.mauve.json")
    png = None if no_plot else (Path(plot) if plot else Path(f"{stem}.mauve.png"))
    check_distinct(report_file, synthetic, reference)
    reference_field = reference_field or field

    rows, broken = read_input(synthetic_path, field, strict, "score")
    synthetic_texts = field_texts(rows, field, str(synthetic_path))
    real_texts = reference_texts(reference, reference_field, strict)
    rng = np.random.default_rng(seed)
    synthetic_texts = _subsample(synthetic_texts, max_samples, rng)
    real_texts = _subsample(real_texts, max_samples, rng)
    need = 2 * clusters
    if min(len(synthetic_texts), len(real_texts)) < need:
        raise SynthtuneError(
            f"MAUVE with {clusters} clusters needs at least {need} rows per file, got {len(synthetic_texts)} "
            f"synthetic and {len(real_texts)} reference; add rows or lower --clusters"
        )

    p = featurize(synthetic_texts, featurizer, cache=not no_cache)
    q = featurize(real_texts, featurizer, cache=not no_cache)
    score = mauve_score(p, q, num_clusters=clusters, seeds=tuple(range(seeds)),
                        kmeans_num_redo=kmeans_num_redo, kmeans_max_iter=kmeans_max_iter)
    if png is not None:
        title = f"{synthetic_path.name} vs {Path(reference).name} ({featurizer})"
        plot_embedding_map(q, {"synthetic": p}, png, title=title, seed=seed)
    report = {
        "command": "score mauve",
        "metric": "mauve",
        "mean": score["mean"],
        "std": score["std"],
        "per_seed": {str(k): v for k, v in score["per_seed"].items()},
        "seeds": list(range(seeds)),
        "clusters": clusters,
        "featurizer": featurizer,
        "feature_dim": int(p.shape[1]),
        "num_synthetic": len(synthetic_texts),
        "num_reference": len(real_texts),
        "broken_lines_skipped": broken,
        "max_samples": max_samples,
        "synthetic_path": str(synthetic_path),
        "reference_path": str(reference),
        "field": field,
        "reference_field": reference_field,
        "plot": str(png) if png is not None else None,
        "seconds": round(time.perf_counter() - start, 3),
    }
    atomic_write_json(report_file, report)
    from rich.console import Console

    Console().print(
        f"MAUVE = [bold]{score['mean']:.4f} ± {score['std']:.4f}[/bold] over {seeds} seed(s), "
        f"{clusters} clusters, featuriser {featurizer} ({len(synthetic_texts)} synthetic vs {len(real_texts)} "
        f"reference); report {report_file}" + (f", map {png}" if png else "")
    )
    return report
