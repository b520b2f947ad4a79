"""Decontamination (``synthtune decontaminate``): drop rows that share a word n-gram with a reference set (SoftSRV App. A.3)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from synthtune.api.files import check_distinct, read_input, reference_texts, report_path
from synthtune.curation.cluster_select import field_texts
from synthtune.curation.decontaminate import DEFAULT_NGRAM, decontaminate as drop_contaminated
from synthtune.curation.streaming_command import streaming_decontaminate, use_scaled_path
from synthtune.curation.streaming_curate import CurateSettings
from synthtune.paths import atomic_write_json, atomic_write_jsonl


def decontaminate(
    input: str,
    reference: str,
    output: str,
    field: str = "text",
    reference_field: Optional[str] = None,
    ngram: int = DEFAULT_NGRAM,
    strict: bool = False,
    streaming: Optional[bool] = None,
    workers: Optional[int] = None,
) -> dict[str, Any]:
    """Drop rows that share a word n-gram with a reference set (SoftSRV App. A.3).

    Writes the clean rows to ``output`` and a JSON report to ``<output>.report.json``.

    Args:
        input: rows to clean (JSONL).
        reference: reference (test) rows (JSONL).
        output: where to write the clean rows (JSONL).
        field: text field of the input rows.
        reference_field: text field of the reference rows (default: field).
        ngram: n-gram length.
        strict: fail on broken JSON lines instead of skipping them.
        streaming: bounded-memory path (docs/curation.md); default: for inputs over 256 MB, folders, globs, Parquet.
        workers: processes of the streaming path (default: every CPU).
    """
    start = time.perf_counter()
    out = Path(output)
    check_distinct(out, input, reference)
    if use_scaled_path(input, streaming, None):
        reference_field = reference_field or field
        base = {"command": "decontaminate", "input_path": str(input), "reference_path": str(reference),
                "output_path": str(out), "field": field, "reference_field": reference_field, "ngram": ngram,
                "num_references": len(reference_texts(reference, reference_field, strict))}
        settings = CurateSettings(field=field, ngram=ngram, strict=strict, reference_path=str(reference),
                                  reference_field=reference_field)
        report = streaming_decontaminate(str(input), str(out), settings, base, str(report_path(out)), workers)
        return report
    rows, broken = read_input(input, field, strict, "decontaminate")
    texts = field_texts(rows, field, str(input))
    reference_field = reference_field or field
    references = reference_texts(reference, reference_field, strict)
    result = drop_contaminated(texts, references, ngram)
    atomic_write_jsonl(out, [rows[i] for i in result.kept])
    report = {
        "command": "decontaminate",
        "input_path": str(input),
        "reference_path": str(reference),
        "output_path": str(out),
        "field": field,
        "reference_field": reference_field,
        "ngram": ngram,
        "input": len(rows) + broken,
        "broken_lines_skipped": broken,
        "num_references": len(references),
        "num_reference_ngrams": result.num_reference_ngrams,
        "decontaminated_dropped": len(result.dropped),
        "contamination_rate": result.contamination_rate,
        "dropped_rows": result.dropped[:100],
        "output": len(result.kept),
        "seconds": round(time.perf_counter() - start, 3),
    }
    report["executor"] = "in-memory"
    atomic_write_json(report_path(out), report)
    return report

