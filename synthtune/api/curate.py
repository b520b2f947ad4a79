"""Curation (``synthtune curate``): deduplicate, optionally decontaminate, and cluster-select synthetic rows (SoftSRV App. A.2)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from synthtune.api.files import (Result, Rows, check_distinct, on_disk_only, read_input, reference_rows_texts,
                                  report_path, source_name, write_kept)
from synthtune.curation.cluster_select import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CLUSTERS,
    DEFAULT_NUM_SAMPLES,
    DEFAULT_SVD_COMPONENTS,
    curate as select_diverse,
)
from synthtune.curation.decontaminate import DEFAULT_NGRAM
from synthtune.curation.streaming_command import run_scaled
from synthtune.curation.streaming_curate import DEFAULT_SAMPLE_SIZE, CurateSettings
from synthtune.errors import SynthtuneError

log = logging.getLogger("synthtune")


def curate(
    input: Rows,
    output: Optional[str] = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    field: str = "text",
    decontaminate: Optional[Rows] = None,
    reference_field: Optional[str] = None,
    ngram: int = DEFAULT_NGRAM,
    svd_components: int = DEFAULT_SVD_COMPONENTS,
    clusters: int = DEFAULT_CLUSTERS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    strict: bool = False,
    streaming: Optional[bool] = None,
    executor: Optional[str] = None,
    workers: Optional[int] = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    near_dedup: bool = False,
    near_dedup_threshold: float = 0.8,
    engine_config: Optional[str] = None,
    work_dir: Optional[str] = None,
) -> Optional[Result]:
    """Deduplicate, optionally decontaminate, and cluster-select synthetic rows (SoftSRV App. A.2).

    Writes the kept rows to ``output`` and a JSON report to ``<output>.report.json``; returns the report, the
    kept rows as its ``rows`` (a ``datasets.Dataset``).

    Args:
        input: generated rows (JSONL; from Python also a ``datasets.Dataset`` or a list of dicts).
        output: where to write the curated rows (JSONL; from Python it may be left out: nothing is written).
        num_samples: rows to keep.
        field: field holding the text.
        decontaminate: drop rows sharing an n-gram with this reference (test) JSONL file.
        reference_field: text field of the reference rows (default: field).
        ngram: decontamination n-gram length.
        svd_components: TF-IDF SVD rank.
        clusters: k-means clusters.
        batch_size: k-means mini-batch.
        seed: random seed.
        strict: fail on broken JSON lines instead of skipping them.
        streaming: bounded-memory path (docs/curation.md); default: for inputs over 256 MB, folders, globs, Parquet.
        executor: run the streaming path as a datatrove pipeline: local, slurm or ray.
        workers: processes of the streaming path or local executor (default: every CPU).
        sample_size: rows the streaming path fits TF-IDF/SVD/k-means on.
        near_dedup: also drop near duplicates (MinHash LSH; streaming path).
        near_dedup_threshold: Jaccard threshold of near_dedup.
        engine_config: YAML of Slurm/Ray executor options.
        work_dir: the engine's folder for intermediate files (default <output>.work).
    """
    start = time.perf_counter()
    out = Path(output) if output is not None else None
    check_distinct(out, input, decontaminate)
    if near_dedup and streaming is None:
        streaming = True
    if on_disk_only(input, output, streaming, executor):
        settings = CurateSettings(
            field=field, num_samples=num_samples, svd_components=svd_components, n_clusters=clusters, seed=seed,
            ngram=ngram, batch_size=batch_size, sample_size=sample_size, near_dedup=near_dedup,
            near_dedup_threshold=near_dedup_threshold, strict=strict, reference_path=decontaminate,
            reference_field=reference_field or field)
        base = {"command": "curate", "input_path": str(input), "output_path": str(out), "field": field,
                "reference_path": decontaminate, "reference_field": (reference_field or field) if decontaminate else None,
                "num_references": 0, "svd_components_requested": svd_components, "clusters_requested": clusters}
        report = run_scaled(str(input), str(out), settings, base, str(report_path(out)), executor, workers,
                            engine_config, work_dir)
        if report is None:
            log.info("curate: submitted to Slurm; %s and its report appear when the jobs finish", out)
            return None
        return Result(report, output=out)
    if near_dedup:
        raise SynthtuneError("--near_dedup runs on the streaming path; drop --streaming false")
    rows, broken = read_input(input, field, strict, "curate")
    reference_field = reference_field or field
    references = reference_rows_texts(decontaminate, reference_field, strict) if decontaminate is not None else None
    kept, stats = select_diverse(
        rows, num_samples=num_samples, field=field, svd_components=svd_components, n_clusters=clusters,
        seed=seed, references=references, ngram=ngram, batch_size=batch_size, broken_lines=broken, source=source_name(input),
    )
    report = {
        "command": "curate",
        "input_path": source_name(input),
        "output_path": source_name(output),
        "field": field,
        "reference_path": source_name(decontaminate),
        "reference_field": reference_field if decontaminate else None,
        "num_references": len(references) if references is not None else 0,
        "svd_components_requested": svd_components,
        "clusters_requested": clusters,
        **stats,
        "seconds": round(time.perf_counter() - start, 3),
    }
    report["executor"] = "in-memory"
    return write_kept(output, kept, report)

