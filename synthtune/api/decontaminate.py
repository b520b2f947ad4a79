"""Decontamination (``synthtune decontaminate``): drop rows that share a word n-gram with a reference set (SoftSRV App. A.3)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from synthtune.api.files import (Result, Rows, check_distinct, on_disk_only, read_input, reference_rows_texts,
                                  report_path, source_name, write_kept)
from synthtune.curation.cluster_select import field_texts
from synthtune.curation.decontaminate import DEFAULT_NGRAM, decontaminate as drop_contaminated
from synthtune.curation.streaming_command import streaming_decontaminate
from synthtune.curation.streaming_curate import CurateSettings


def decontaminate(
    input: Rows,
    reference: Rows,
    output: Optional[str] = None,
    field: str = "text",
    reference_field: Optional[str] = None,
    ngram: int = DEFAULT_NGRAM,
    strict: bool = False,
    streaming: Optional[bool] = None,
    workers: Optional[int] = None,
) -> Result:
    """Drop rows that share a word n-gram with a reference set (SoftSRV App. A.3).

    Writes the clean rows to ``output`` and a JSON report to ``<output>.report.json``; returns the report, the
    clean rows as its ``rows`` (a ``datasets.Dataset``).

    Args:
        input: rows to clean (JSONL; from Python also a ``datasets.Dataset`` or a list of dicts).
        reference: reference (test) rows (JSONL; from Python also a ``datasets.Dataset`` or a list of dicts).
        output: where to write the clean rows (JSONL; from Python it may be left out: nothing is written).
        field: text field of the input rows.
        reference_field: text field of the reference rows (default: field).
        ngram: n-gram length.
        strict: fail on broken JSON lines instead of skipping them.
        streaming: bounded-memory path (docs/curation.md); default: for inputs over 256 MB, folders, globs, Parquet.
        workers: processes of the streaming path (default: every CPU).
    """
    start = time.perf_counter()
    out = Path(output) if output is not None else None
    check_distinct(out, input, reference)
    if on_disk_only(input, output, streaming):
        reference_field = reference_field or field
        base = {"command": "decontaminate", "input_path": str(input), "reference_path": str(reference),
                "output_path": str(out), "field": field, "reference_field": reference_field, "ngram": ngram,
                "num_references": len(reference_rows_texts(reference, reference_field, strict))}
        settings = CurateSettings(field=field, ngram=ngram, strict=strict, reference_path=str(reference),
                                  reference_field=reference_field)
        report = streaming_decontaminate(str(input), str(out), settings, base, str(report_path(out)), workers)
        return Result(report, output=out)
    rows, broken = read_input(input, field, strict, "decontaminate")
    texts = field_texts(rows, field, source_name(input))
    reference_field = reference_field or field
    references = reference_rows_texts(reference, reference_field, strict)
    result = drop_contaminated(texts, references, ngram)
    report = {
        "command": "decontaminate",
        "input_path": source_name(input),
        "reference_path": source_name(reference),
        "output_path": source_name(output),
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
    return write_kept(output, [rows[i] for i in result.kept], report)

