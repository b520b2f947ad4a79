"""The streaming curation as a datatrove pipeline: local workers, a Slurm cluster or a Ray cluster.

Why datatrove (evaluated beside Ray Data and Dask, see docs/curation.md): it is built for exactly
this job (Hugging Face's large-scale text processing: readers over fsspec, MinHash dedup and
n-gram decontamination blocks), its tasks are plain Python steps run on ``tasks`` shards, it
records each finished task so a killed or preempted run resumes where it stopped, and one
pipeline runs unchanged on its local, Slurm and Ray executors. Its install is small and
CPU-only (loguru, humanize, multiprocess, dill), unlike Ray, and it needs no scheduler service
for local runs, unlike Dask distributed.

The curation's steps become four datatrove stages, each a :class:`~datatrove.pipeline.base.PipelineStep`
running the same functions as :func:`~synthtune.curation.streaming_curate.streaming_curate`, so
the rows chosen are the same:

1. ``ScanUnits`` (one task per unit): parse, hash, decontaminate, sample candidates;
2. ``FitSample`` (one task): dedup over all units, the pool, the sample, the fitted model;
3. ``AssignClusters`` (one task per unit): every pool row's cluster;
4. ``SelectAndWrite`` (one task): the round-robin draw, the output and its report, both atomic.

Intermediate files live in a work folder (``<output>.work`` unless given), which must be on a
filesystem every node sees for Slurm and Ray; it is deleted after a successful local run.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
import json
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from synthtune.curation.streaming_curate import (
    CurateSettings,
    SampleKeeper,
    _candidates,
    assign_unit,
    choose,
    finish_counts,
    load_reference,
    make_plan,
    merge_scans,
    scan_unit,
    unit_bases,
    write_chosen,
)
from synthtune.curation.streaming_input import DEFAULT_UNIT_BYTES, plan_units
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes, atomic_write_json

EXECUTORS = ("local", "slurm", "ray")
JOB = "job.pkl"


def _save(path: Path, value: Any) -> None:
    atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _load(path: Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


try:
    from datatrove.pipeline.base import PipelineStep as _PipelineStep
except ImportError:  # the optional extra is missing: engine_curate says so in one line
    _PipelineStep = object


def _require_datatrove() -> None:
    if _PipelineStep is object:
        raise SynthtuneError(
            "--executor needs datatrove; pip install 'synthtune[curation]' (scripts/setup.sh installs it)"
        )


class _CurationStep(_PipelineStep):
    """A stage's work on the job in folder ``work``; subclasses define ``work_on(job, rank)``.

    Args:
        work: the work folder holding ``job.pkl`` and the stages' files.
    """

    type = "synthtune curate"
    # per-unit tasks run side by side, one BLAS/OpenMP thread each; the one-task stages keep the process's
    # threads, as the streaming path's fit does (k-means' early stop can see the thread count's rounding)
    threads: Optional[int] = 1

    def __init__(self, work: str):
        super().__init__()
        self.work = Path(work)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from threadpoolctl import threadpool_limits

        if self.threads is None:
            self.work_on(_load(self.work / JOB), rank)
            return None
        with threadpool_limits(self.threads):
            self.work_on(_load(self.work / JOB), rank)
        return None

    @abstractmethod
    def work_on(self, job: dict[str, Any], rank: int) -> None:
        """Do task ``rank`` of this stage for ``job`` (each subclass is one stage of the curation)."""


class ScanUnits(_CurationStep):
    """Task ``rank`` parses unit ``rank``: hashes, contamination flags, sample candidates, row offsets."""

    name = "scan units"

    def work_on(self, job: dict[str, Any], rank: int) -> None:
        scan = scan_unit(job["units"][rank], job["settings"], job["reference"])
        np.save(self.work / f"offsets-{rank:05d}.npy", scan.offsets)
        scan.offsets = None
        _save(self.work / f"scan-{rank:05d}.pkl", scan)


class FitSample(_CurationStep):
    """One task: dedup over all units, the pool, the seeded sample and the fitted TF-IDF/SVD/k-means."""

    name = "fit sample"
    threads = None

    def work_on(self, job: dict[str, Any], rank: int) -> None:
        settings: CurateSettings = job["settings"]
        keeper, scans, base = SampleKeeper(_candidates(settings)), [], 0
        for index in range(len(job["units"])):
            scan = _load(self.work / f"scan-{index:05d}.pkl")
            keeper.add(scan, base)
            base += scan.rows
            scan.sample_keys, scan.sample_rows, scan.sample_texts = np.empty(0, np.uint64), np.empty(0, np.int64), []
            scans.append(scan)
        merged = merge_scans(scans, keeper, settings)
        del scans, keeper
        _save(self.work / "plan.pkl", make_plan(merged, settings, job["input"]))


class AssignClusters(_CurationStep):
    """Task ``rank`` gives every pool row of unit ``rank`` its cluster."""

    name = "assign clusters"

    def work_on(self, job: dict[str, Any], rank: int) -> None:
        plan = _load(self.work / "plan.pkl")
        labels = np.empty(0, dtype=np.int32)
        if plan.model is not None:
            rows = plan.merged.unit_rows
            base = unit_bases(rows)[rank]
            labels = assign_unit(job["units"][rank], plan.merged.pool[base:base + rows[rank]], plan.model,
                                 job["settings"])
        np.save(self.work / f"labels-{rank:05d}.npy", labels)


class SelectAndWrite(_CurationStep):
    """One task: the round-robin draw over the labels, the chosen rows and the report, each written atomically."""

    name = "select and write"
    threads = None

    def work_on(self, job: dict[str, Any], rank: int) -> None:
        settings: CurateSettings = job["settings"]
        plan = _load(self.work / "plan.pkl")
        count = len(job["units"])

        def label_chunks():
            return (np.load(self.work / f"labels-{i:05d}.npy") for i in range(count))

        chosen, extra = choose(plan, label_chunks, settings)
        offsets = [np.load(self.work / f"offsets-{i:05d}.npy") for i in range(count)]
        written = write_chosen(job["units"], offsets, plan.merged.unit_rows, chosen, job["output"])
        counts = finish_counts(plan.merged, extra, written, plan, settings, f"datatrove-{job['executor']}",
                               job["workers"], count)
        atomic_write_json(job["report_path"], compose_report(job["report_base"], counts, job["started"]))


def compose_report(base: dict[str, Any], counts: dict[str, Any], started: float) -> dict[str, Any]:
    """The command's report: its own entries, the run's counts, and the seconds since ``started`` (epoch)."""
    return {**base, **counts, "seconds": round(time.time() - started, 3)}


def _fingerprint(input: str, units: list, settings: CurateSettings, output: str) -> str:
    """What the work folder's results depend on: the units (paths, sizes, mtimes) and the settings."""
    parts = [output, repr(settings)]
    for unit in units:
        stat = os.stat(unit.path)
        parts.append(f"{unit.path}:{unit.start}:{unit.end}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load_engine_config(path: Optional[str]) -> dict[str, Any]:
    """The executor settings of a YAML file (``slurm:`` / ``ray:`` keys), or {} without one."""
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SynthtuneError(f"engine config not found: {path}; check --engine_config") from None
    if not isinstance(data, dict):
        raise SynthtuneError(f"{path}: the engine config must be a mapping (slurm: ..., ray: ...)")
    return data


def _executors(kind: str, work: Path, tasks: int, workers: int, config: dict[str, Any]):
    """The four stages as datatrove executors of ``kind``, each depending on the one before."""
    steps = [(ScanUnits, tasks), (FitSample, 1), (AssignClusters, tasks), (SelectAndWrite, 1)]
    names = ["scan", "fit", "assign", "write"]
    previous = None
    for (step, count), name in zip(steps, names):
        logs = str(work / "logs" / name)
        if kind == "local":
            from datatrove.executor import LocalPipelineExecutor

            previous = LocalPipelineExecutor(pipeline=[step(str(work))], tasks=count, workers=min(workers, count),
                                             logging_dir=logs, depends=previous)
        elif kind == "slurm":
            from datatrove.executor import SlurmPipelineExecutor

            options = dict(config.get("slurm") or {})
            if "partition" not in options or "time" not in options:
                raise SynthtuneError("--executor slurm needs slurm.partition and slurm.time in --engine_config")
            previous = SlurmPipelineExecutor(pipeline=[step(str(work))], tasks=count, logging_dir=logs,
                                             job_name=f"synthtune-curate-{name}", depends=previous, **options)
        else:
            try:
                from datatrove.executor.ray import RayPipelineExecutor
            except ImportError:
                raise SynthtuneError("--executor ray needs ray; pip install 'datatrove[ray]'") from None
            options = dict(config.get("ray") or {})
            previous = RayPipelineExecutor(pipeline=[step(str(work))], tasks=count, logging_dir=logs,
                                           depends=previous, **options)
    return previous


def engine_curate(input: str, output: str, settings: CurateSettings, report_base: dict[str, Any],
                  report_path: str, executor: str = "local", workers: int = 2, engine_config: Optional[str] = None,
                  work_dir: Optional[str] = None, unit_bytes: int = DEFAULT_UNIT_BYTES) -> Optional[dict[str, Any]]:
    """Run (local, Ray) or submit (Slurm) the curation as a datatrove pipeline.

    Args:
        input: the input spec (file, folder, glob or comma-separated list).
        output: the JSONL output, written atomically by the last stage.
        settings: what to do.
        report_base: the command's own report entries.
        report_path: where the last stage writes the report.
        executor: ``local``, ``slurm`` or ``ray``.
        workers: tasks run at once (local executor).
        engine_config: YAML with ``slurm:`` / ``ray:`` executor options.
        work_dir: the folder for intermediate files (default ``<output>.work``).
        unit_bytes: target size of a JSONL unit (one task each).

    Returns:
        The report for local and Ray runs; None for Slurm, whose jobs write it when they finish.
    """
    if executor not in EXECUTORS:
        raise SynthtuneError(f"unknown --executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    _require_datatrove()
    settings.check()
    config = load_engine_config(engine_config)
    work = Path(work_dir) if work_dir else Path(f"{output}.work")
    units = plan_units(input, unit_bytes)
    fingerprint = _fingerprint(input, units, settings, output)
    stamp = work / "fingerprint.txt"
    if work.exists() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        shutil.rmtree(work)  # a run with other input or settings: its finished tasks do not apply
    work.mkdir(parents=True, exist_ok=True)
    if not (work / JOB).is_file():
        job = {"units": units, "settings": settings, "reference": load_reference(settings), "input": str(input),
               "output": str(output), "report_base": report_base, "report_path": str(report_path),
               "started": time.time(), "executor": executor, "workers": int(workers)}
        _save(work / JOB, job)
        stamp.write_text(fingerprint)
    last = _executors(executor, work, len(units), int(workers), config)
    last.run()
    if executor == "slurm":
        return None
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    shutil.rmtree(work, ignore_errors=True)
    return report
