"""``synthtune curate``: deduplicate, optionally decontaminate, and cluster-select synthetic rows (SoftSRV App. A.2)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from synthtune.commands.files import check_distinct, print_table, read_input, reference_texts, report_path
from synthtune.curation.cluster_select import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CLUSTERS,
    DEFAULT_NUM_SAMPLES,
    DEFAULT_SVD_COMPONENTS,
    curate as select_diverse,
)
from synthtune.curation.decontaminate import DEFAULT_NGRAM
from synthtune.paths import atomic_write_json, atomic_write_jsonl


def curate(
    input: str,
    output: str,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    field: str = "text",
    decontaminate: Optional[str] = None,
    reference_field: Optional[str] = None,
    ngram: int = DEFAULT_NGRAM,
    svd_components: int = DEFAULT_SVD_COMPONENTS,
    clusters: int = DEFAULT_CLUSTERS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    strict: bool = False,
) -> dict[str, Any]:
    """Deduplicate, optionally decontaminate, and cluster-select synthetic rows (SoftSRV App. A.2).

    Writes the kept rows to ``output`` and a JSON report to ``<output>.report.json``.

    Args:
        input: generated rows (JSONL).
        output: where to write the curated rows (JSONL).
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
    """
    start = time.perf_counter()
    out = Path(output)
    check_distinct(out, input, decontaminate)
    rows, broken = read_input(input, field, strict, "curate")
    reference_field = reference_field or field
    references = reference_texts(decontaminate, reference_field, strict) if decontaminate else None
    kept, stats = select_diverse(
        rows, num_samples=num_samples, field=field, svd_components=svd_components, n_clusters=clusters,
        seed=seed, references=references, ngram=ngram, batch_size=batch_size, broken_lines=broken, source=str(input),
    )
    atomic_write_jsonl(out, kept)
    report = {
        "command": "curate",
        "input_path": str(input),
        "output_path": str(out),
        "field": field,
        "reference_path": decontaminate,
        "reference_field": reference_field if decontaminate else None,
        "num_references": len(references) if references is not None else 0,
        "svd_components_requested": svd_components,
        "clusters_requested": clusters,
        **stats,
        "seconds": round(time.perf_counter() - start, 3),
    }
    atomic_write_json(report_path(out), report)
    print_table(f"curate: {input} -> {out}", [
        ("input lines", report["input"]),
        ("broken lines skipped", report["broken_lines_skipped"]),
        ("after dedup", report["after_dedup"]),
        ("decontaminated dropped", report["decontaminated_dropped"]),
        ("contamination rate", report["contamination_rate"]),
        ("clusters used", report["clusters_used"]),
        ("selected", report["selected"]),
        ("output", report["output"]),
    ])
    return report
