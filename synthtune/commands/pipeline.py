"""``synthtune pipeline``: select -> fit -> contexts -> predict -> filter -> curate -> decontaminate -> answers
-> align -> score -> export -> report."""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console
from rich.table import Table

from synthtune.errors import SynthtuneError
from synthtune.pipeline import run_pipeline


def pipeline(
    root: Optional[str] = None,
    select: Optional[dict] = None,
    fit: Optional[dict] = None,
    contexts: Optional[dict] = None,
    predict: Optional[dict] = None,
    filter: Optional[dict] = None,
    curate: Optional[dict] = None,
    decontaminate: Optional[dict] = None,
    answers: Optional[dict] = None,
    align: Optional[dict] = None,
    score: Optional[dict] = None,
    export: Optional[dict] = None,
    report: Optional[dict] = None,
    stages: Optional[str] = None,
    from_stage: Optional[str] = None,
) -> dict[str, Any]:
    """Run a whole synthetic-data pipeline from one YAML (``--config pipelines/<name>.yaml``), resumably.

    Each stage with a section runs into ``<root>/<stage>/`` and ends by writing its ``manifest.json``; a rerun
    skips every stage whose manifest matches its settings and inputs, resumes a killed one, and reruns what an
    edit changed and everything after it. See docs/pipeline.md.

    Args:
        root: the pipeline's folder (one sub-folder per stage).
        select: options of ``synthtune synalign select`` (task, budget, cluster_size, ...): GP-chosen
            demonstrations that the predict stage generates from (SynAlign).
        fit: ``{config: <synthtune fit config>, overrides: {<dotted key>: <value>, ...}}`` (the keys of a task
            config, e.g. ``trainer.max_steps: 50``; the older list of command-line words still works, with a
            deprecation warning).
        contexts: ``{tau: null, noise: 1e-4, seed: 0}``: generate from the fit's training contexts in GP
            max-variance order over E(x) instead of round-robin (SoftSRV).
        predict: ``{overrides: {...}}`` (predicts from the fit), or ``{config: ..., overrides: {...}}`` without fit.
        filter: options of ``synthtune filter`` (scorer, keep_fraction, ...): keep the labelled rows whose text
            agrees with their label, per label; the generator scorer uses the fit stage's DawGen run.
        curate: options of ``synthtune curate`` (num_samples, clusters, field, ...).
        decontaminate: options of ``synthtune decontaminate`` (reference: the task's evaluation split, ...).
        answers: ``{config: <predict config>, field: text, overrides: {...}}``: answer the questions (QA tasks).
        align: ``{config: <MMD weights config>, real: <real rows>, overrides: {...}}``: fit SynAlign's MMD sample
            weights of the rows so far against the real rows and resample them (real defaults to select's demos).
        score: options of ``synthtune score mauve`` (reference, featurizer, clusters, ...).
        export: ``{name: <card title>, push_to_hub: <repo id>, private: false}``.
        report: ``{samples: <rows shown per label>, field: <text field shown>}``.
        stages: run only these stages (comma-separated); the ones before them must have finished.
        from_stage: run this stage and every one after it.
    """
    if not root:
        raise SynthtuneError("the pipeline needs a root folder for its stages; add `root: runs/<name>` to its YAML "
                             "or pass --root")
    done = run_pipeline(root, {"select": select, "fit": fit, "contexts": contexts, "predict": predict,
                               "filter": filter, "curate": curate, "decontaminate": decontaminate,
                               "answers": answers, "align": align, "score": score, "export": export, "report": report},
                        stages=stages, from_stage=from_stage)
    table = Table(title=f"pipeline {root}")
    for column in ("stage", "status", "rows", "seconds"):
        table.add_column(column)
    for name, manifest in done.items():
        table.add_row(name, "ran" if manifest["ran"] else "up to date", str(manifest.get("rows", "")),
                      str(manifest.get("seconds", "")))
    Console().print(table)
    return done
