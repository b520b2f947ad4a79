"""Which path ``synthtune curate`` / ``decontaminate`` take, and the scaled paths' runs in the commands' report format.

* in memory (today's path) for one JSONL file up to :data:`STREAMING_BYTES`;
* the streaming path (:mod:`synthtune.curation.streaming_curate`) above it, for a folder, a glob,
  several files or Parquet, or when ``streaming=True``;
* the datatrove engine (:mod:`synthtune.curation.engine_datatrove`) when an ``executor`` is named.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from synthtune.curation.streaming_curate import CurateSettings, streaming_curate
from synthtune.curation.streaming_input import input_bytes, is_sharded
from synthtune.errors import SynthtuneError

# One JSONL file above this size goes to the streaming path (about 1M generated-question rows,
# where the in-memory path measured 2.76 GB of RSS).
STREAMING_BYTES = 256 * 2**20


def use_scaled_path(input: str, streaming: Optional[bool], executor: Optional[str]) -> bool:
    """Whether a command takes the streaming or engine path rather than the in-memory one.

    Args:
        input: the ``--input`` spec.
        streaming: the user's choice (None: by size and shape of the input).
        executor: a datatrove executor name, or None.
    """
    if executor:
        if streaming is False:
            raise SynthtuneError("--executor runs the streaming curation; drop --streaming false")
        return True
    if streaming is not None:
        if streaming is False and is_sharded(input):
            raise SynthtuneError(f"{input}: several files or Parquet need the streaming path; drop --streaming false")
        return bool(streaming)
    return is_sharded(input) or input_bytes(input) > STREAMING_BYTES


def run_scaled(input: str, output: str, settings: CurateSettings, report_base: dict[str, Any], report_path: str,
               executor: Optional[str], workers: Optional[int], engine_config: Optional[str],
               work_dir: Optional[str]) -> Optional[dict[str, Any]]:
    """Run the streaming path or the engine and write the report; returns it (None for a Slurm submission).

    Args:
        input: the input spec.
        output: the JSONL output.
        settings: what to do.
        report_base: the command's own report entries (paths, fields, requested settings).
        report_path: where the report goes.
        executor: ``local``, ``slurm``, ``ray`` or None for the in-process streaming path.
        workers: worker processes (None or 0: every CPU).
        engine_config: YAML of executor options (Slurm partition/time, Ray resources).
        work_dir: the engine's folder for intermediate files.
    """
    from synthtune.curation.engine_datatrove import compose_report
    from synthtune.curation.streaming_curate import resolve_workers
    from synthtune.paths import atomic_write_json

    if settings.reference_path is not None:
        from synthtune.curation.reference import reference_texts

        report_base["num_references"] = len(
            reference_texts(settings.reference_path, settings.reference_field or settings.field, settings.strict))
    started = time.time()
    if executor:
        from synthtune.curation.engine_datatrove import engine_curate

        return engine_curate(input, output, settings, report_base, report_path, executor, resolve_workers(workers),
                             engine_config, work_dir)
    counts = streaming_curate(input, output, settings, workers)
    report = compose_report(report_base, counts, started)
    atomic_write_json(report_path, report)
    return report


def streaming_decontaminate(input: str, output: str, settings: CurateSettings, report_base: dict[str, Any],
                            report_path: str, workers: Optional[int]) -> dict[str, Any]:
    """``synthtune decontaminate`` on the streaming path: every row without a reference n-gram, in input order.

    Args:
        input: the input spec.
        output: the JSONL output (written atomically).
        settings: field, n-gram length, reference and strictness (``select`` is set False here).
        report_base: the command's own report entries.
        report_path: where the report goes.
        workers: worker processes (None or 0: every CPU).
    """
    import numpy as np

    from synthtune.curation.engine_datatrove import compose_report
    from synthtune.curation.streaming_curate import (
        SampleKeeper,
        _map,
        _scan_task,
        load_reference,
        merge_scans,
        resolve_workers,
        write_chosen,
    )
    from synthtune.curation.streaming_input import plan_units
    from synthtune.paths import atomic_write_json

    started = time.time()
    settings.select, settings.sample_size, settings.n_clusters = False, 1, 1
    workers = resolve_workers(workers)
    units = plan_units(input)
    reference = load_reference(settings)
    scans = []
    for scan in _map(_scan_task, units, workers, (settings, reference, None)):
        scan.sample_keys, scan.sample_rows, scan.sample_texts = np.empty(0, np.uint64), np.empty(0, np.int64), []
        scans.append(scan)
    merged = merge_scans(scans, SampleKeeper(1), settings)
    if merged.counts["rows_read"] == 0:
        raise SynthtuneError(f"{input}: no rows to decontaminate; check the input file")
    written = write_chosen(units, [s.offsets for s in scans], merged.unit_rows, np.flatnonzero(merged.pool), output)
    counts = {key: merged.counts[key] for key in ("input", "broken_lines_skipped", "decontaminated_dropped",
                                                  "contamination_rate")}
    counts.update(num_reference_ngrams=int(len(reference)), dropped_rows=np.flatnonzero(~merged.pool)[:100].tolist(),
                  output=written, executor="streaming", workers=workers, units=len(units))
    report = compose_report(report_base, counts, started)
    atomic_write_json(report_path, report)
    return report
