"""``synthtune score METRIC``: score synthetic data against real data (``mauve``: SoftSRV App. A.7)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np

from synthtune.api.files import (Rows, check_distinct, is_path, read_input, reference_rows_texts, reference_texts,
                                  source_name)
from synthtune.components.encoders import DEFAULT_FEATURIZER, featurize
from synthtune.curation.cluster_select import field_texts
from synthtune.curation.embedding_map import plot_embedding_map
from synthtune.curation.mauve_score import (AUTO_CLUSTERS, AUTO_CLUSTERS_RULE, DEFAULT_MAUVE_CLUSTERS, SPREAD_NOTE,
                                            auto_clusters, mauve_score, require_mauve)
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_json


def _subsample(texts: list[str], max_samples: int | None, rng: np.random.Generator) -> list[str]:
    if max_samples is None or len(texts) <= max_samples:
        return texts
    return [texts[i] for i in np.sort(rng.choice(len(texts), size=max_samples, replace=False))]



def mauve_report_path(synthetic: Rows, output: Optional[str]) -> Optional[Path]:
    """Where ``score mauve`` writes its report: ``output``, or ``<synthetic without suffix>.mauve.json`` (none for
    rows given in memory without ``output``)."""
    if output:
        return Path(output)
    return Path(f"{Path(synthetic).with_suffix('')}.mauve.json") if is_path(synthetic) else None


def novelty_report_path(synthetic: str, output: Optional[str]) -> Path:
    """Where ``score novelty`` writes its report: ``output``, or ``<synthetic without suffix>.novelty.json``."""
    return Path(output) if output else Path(f"{Path(synthetic).with_suffix('')}.novelty.json")


def ceiling_score(q: np.ndarray, texts: list[str], size: int, draws: int, clusters: int, seeds: int, seed: int,
                  featurizer: str, cache: bool, kmeans_num_redo: int, kmeans_max_iter: int) -> dict[str, Any]:
    """MAUVE of ``draws`` seeded draws of ``size`` real rows (``texts``) against the reference features ``q``,
    with the synthetic set's bucket count and seeds: the score real data gets at this size (its ceiling), and
    ``std_draws``, how far it moves with which rows are drawn (the sampling noise at this size)."""
    if len(texts) < size:
        raise SynthtuneError(f"the ceiling needs {size} real rows (as many as the synthetic set), the file has "
                             f"{len(texts)}; pass a larger --ceiling file")
    per_draw, seed_stds = [], []
    for draw in range(draws):
        rng = np.random.default_rng([seed, 1 + draw])  # independent of the synthetic and reference draws
        chosen = [texts[i] for i in np.sort(rng.choice(len(texts), size=size, replace=False))]
        score = mauve_score(featurize(chosen, featurizer, cache=cache), q, num_clusters=clusters,
                            seeds=tuple(range(seeds)), kmeans_num_redo=kmeans_num_redo,
                            kmeans_max_iter=kmeans_max_iter)
        per_draw.append(score["mean"])
        seed_stds.append(score["std"])
    return {"mean": float(np.mean(per_draw)), "std": float(np.mean(seed_stds)), "std_draws": float(np.std(per_draw)),
            "per_draw": per_draw, "draws": draws, "size": size}


def mauve(
    synthetic: Rows,
    reference: Rows,
    field: str = "text",
    reference_field: Optional[str] = None,
    featurizer: str = DEFAULT_FEATURIZER,
    clusters: Union[int, Literal["auto"]] = DEFAULT_MAUVE_CLUSTERS,
    seeds: int = 3,
    kmeans_num_redo: int = 5,
    kmeans_max_iter: int = 500,
    max_samples: Optional[int] = None,
    seed: int = 0,
    ceiling: Optional[str] = None,
    ceiling_field: Optional[str] = None,
    ceiling_draws: int = 5,
    output: Optional[str] = None,
    plot: Optional[str] = None,
    no_plot: bool = False,
    no_cache: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """MAUVE between synthetic and real texts, mean ± std over k-means seeds (SoftSRV App. A.7).

    Needs ``pip install 'synthtune[mauve]'``. Writes a JSON report and a 2-D embedding map. The ± covers the
    k-means seeds only; with a few dozen rows the score moves more with which rows were drawn. ``--ceiling``
    measures both: the same score for as many real rows (e.g. the task's training split) as there are
    synthetic ones, over ``ceiling_draws`` seeded draws, against the same reference rows and features.

    Args:
        synthetic: synthetic rows (JSONL; from Python also a ``datasets.Dataset`` or a list of dicts).
        reference: real rows to compare with (JSONL; from Python also a ``datasets.Dataset`` or a list of dicts).
        field: text field of the synthetic rows.
        reference_field: text field of the reference rows (default: field).
        featurizer: minilm, smollm2-135m, or a causal LM name/folder.
        clusters: MAUVE k-means buckets, or auto: max(2, round(n / 10)) for n the smaller set's rows.
        seeds: number of k-means seeds 0..N-1.
        kmeans_num_redo: k-means restarts per seed.
        kmeans_max_iter: k-means iterations.
        max_samples: score a random subset of at most N rows from each file.
        seed: seed of the max_samples subset, the ceiling's draws and the plot.
        ceiling: real rows (not the reference's) to score the same way at the synthetic set's size.
        ceiling_field: text field of the ceiling rows (default: reference_field).
        ceiling_draws: seeded draws of real rows for the ceiling (their spread is the sampling noise).
        output: JSON report (default: <synthetic>.mauve.json; none for rows given from Python).
        plot: 2-D embedding map PNG (default: <synthetic>.mauve.png; none for rows given from Python).
        no_plot: skip the embedding map.
        no_cache: recompute features instead of using the cache.
        strict: fail on broken JSON lines instead of skipping them.
    """
    start = time.perf_counter()
    if seeds < 1:
        raise SynthtuneError(f"--seeds must be at least 1, got {seeds}")
    if max_samples is not None and max_samples < 1:
        raise SynthtuneError(f"--max_samples must be at least 1, got {max_samples}")
    if ceiling_draws < 1:
        raise SynthtuneError(f"--ceiling_draws must be at least 1, got {ceiling_draws}")
    if clusters != AUTO_CLUSTERS and (isinstance(clusters, bool) or not isinstance(clusters, int)):
        raise SynthtuneError(f"--clusters takes a number or auto, got {clusters!r}")
    require_mauve()  # fail before any featurisation when the optional extra is missing
    report_file = mauve_report_path(synthetic, output)
    default_png = Path(f"{Path(synthetic).with_suffix('')}.mauve.png") if is_path(synthetic) else None
    png = None if no_plot else (Path(plot) if plot else default_png)
    check_distinct(report_file, synthetic, reference, ceiling)
    reference_field = reference_field or field

    rows, broken = read_input(synthetic, field, strict, "score")
    synthetic_texts = field_texts(rows, field, source_name(synthetic))
    real_texts = reference_rows_texts(reference, reference_field, strict)
    ceiling_texts = reference_texts(ceiling, ceiling_field or reference_field, strict) if ceiling else None
    rng = np.random.default_rng(seed)
    synthetic_texts = _subsample(synthetic_texts, max_samples, rng)
    real_texts = _subsample(real_texts, max_samples, rng)
    if ceiling_texts is not None and len(ceiling_texts) < len(synthetic_texts):
        raise SynthtuneError(f"--ceiling {ceiling} has {len(ceiling_texts)} rows, fewer than the {len(synthetic_texts)} "
                             "synthetic rows it is compared at; pass a larger real set (e.g. the training split)")
    auto = clusters == AUTO_CLUSTERS
    if auto:
        clusters = auto_clusters(len(synthetic_texts), len(real_texts))
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
    top = None
    if ceiling_texts is not None:
        top = ceiling_score(q, ceiling_texts, len(synthetic_texts), ceiling_draws, clusters, seeds, seed, featurizer,
                            not no_cache, kmeans_num_redo, kmeans_max_iter)
        top.update(path=str(ceiling), field=ceiling_field or reference_field)
    if png is not None:
        title = f"{Path(source_name(synthetic)).name} vs {Path(source_name(reference)).name} ({featurizer})"
        plot_embedding_map(q, {"synthetic": p}, png, title=title, seed=seed)
    report = {
        "command": "score mauve",
        "metric": "mauve",
        "mean": score["mean"],
        "std": score["std"],
        "spread": SPREAD_NOTE,
        "per_seed": {str(k): v for k, v in score["per_seed"].items()},
        "seeds": list(range(seeds)),
        "clusters": clusters,
        "clusters_rule": AUTO_CLUSTERS_RULE if auto else "fixed (--clusters)",
        "featurizer": featurizer,
        "feature_dim": int(p.shape[1]),
        "num_synthetic": len(synthetic_texts),
        "num_reference": len(real_texts),
        "ceiling": top,
        "broken_lines_skipped": broken,
        "max_samples": max_samples,
        "synthetic_path": source_name(synthetic),
        "reference_path": source_name(reference),
        "field": field,
        "reference_field": reference_field,
        "plot": str(png) if png is not None else None,
        "seconds": round(time.perf_counter() - start, 3),
    }
    if report_file is not None:
        atomic_write_json(report_file, report)
    return report


def novelty(
    synthetic: str,
    train: str,
    field: str = "text",
    train_field: Optional[str] = None,
    contexts: Optional[str] = None,
    contexts_field: Optional[str] = None,
    context_key: str = "context_index",
    ngram: int = 13,
    threshold: float = 0.5,
    near_cosine: float = 0.95,
    featurizer: Optional[str] = DEFAULT_FEATURIZER,
    output: Optional[str] = None,
    no_cache: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """How much of each synthetic sample is copied: 13-gram overlap with its own context and with the train split,
    nearest-neighbour cosine to the train split, distinct rows.

    A sample copies a reference when more than ``threshold`` of its word n-grams (normalised as for
    decontamination, SoftSRV App. A.3) occur in it; one too short for an n-gram copies it only when equal to it.
    Writes a JSON report (``synthtune.curation.novelty.novelty_report`` says what each number is).

    Args:
        synthetic: synthetic rows (JSONL).
        train: the train split (JSONL) the generator learned from.
        field: text field of the synthetic rows.
        train_field: text field of the train rows (default: field).
        contexts: the texts the samples' contexts index (JSONL, row i is context i): for SoftSRV the run's
            training texts, for PT the template's training file; omit to skip the context overlap.
        contexts_field: text field of the contexts rows (default: train_field).
        context_key: the synthetic rows' field that indexes contexts (context_index for SoftSRV, example_index
            for PT); a row without it, or with null, has no context.
        ngram: the n-gram length in words.
        threshold: overlap share above which a sample copies its reference.
        near_cosine: nearest-neighbour cosine at or above which a sample counts as a near-duplicate of a train row.
        featurizer: features of the nearest-neighbour cosine (minilm, smollm2-135m, or a causal LM); null skips it.
        output: JSON report (default: <synthetic>.novelty.json).
        no_cache: recompute features instead of using the cache.
        strict: fail on broken JSON lines instead of skipping them.
    """
    from synthtune.curation.novelty import novelty_report

    start = time.perf_counter()
    if ngram < 1:
        raise SynthtuneError(f"--ngram must be at least 1, got {ngram}")
    synthetic_path = Path(synthetic)
    report_file = novelty_report_path(synthetic, output)
    check_distinct(report_file, synthetic, train, contexts)
    train_field = train_field or field
    rows, broken = read_input(synthetic_path, field, strict, "score")
    texts = field_texts(rows, field, str(synthetic_path))
    train_texts = reference_texts(train, train_field, strict)
    context_texts = None
    if contexts is not None:
        pool = reference_texts(contexts, contexts_field or train_field, strict)
        context_texts = []
        for row in rows:
            index = row.get(context_key)
            if index is not None and not (isinstance(index, int) and 0 <= index < len(pool)):
                raise SynthtuneError(f"{synthetic}: row {row.get('id')} has {context_key} {index!r}, outside the "
                                     f"{len(pool)} rows of --contexts {contexts}; pass the contexts the run used")
            context_texts.append(None if index is None else pool[index])
    features = train_features = None
    if featurizer:
        features = featurize(texts, featurizer, cache=not no_cache)
        train_features = featurize(train_texts, featurizer, cache=not no_cache)
    report = novelty_report(texts, train_texts, context_texts, features, train_features, n=ngram,
                            threshold=threshold, near_cosine=near_cosine)
    report.update(command="score novelty", featurizer=featurizer, synthetic_path=str(synthetic_path),
                  train_path=str(train), contexts_path=contexts, context_key=context_key,
                  broken_lines_skipped=broken, seconds=round(time.perf_counter() - start, 3))
    atomic_write_json(report_file, report)
    return report
