"""``synthtune pipeline``: fit -> predict -> curate -> decontaminate -> answers -> score -> export -> report."""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console
from rich.table import Table

from synthtune.errors import SynthtuneError
from synthtune.pipeline import run_pipeline


def pipeline(
    root: Optional[str] = None,
    fit: Optional[dict] = None,
    predict: Optional[dict] = None,
    curate: Optional[dict] = None,
    decontaminate: Optional[dict] = None,
    answers: Optional[dict] = None,
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
        fit: ``{config: <synthtune fit config>, overrides: [--key, value, ...]}``.
        predict: ``{overrides: [...]}`` (predicts from the fit), or ``{config: ..., overrides: [...]}`` without fit.
        curate: options of ``synthtune curate`` (num_samples, clusters, field, ...).
        decontaminate: options of ``synthtune decontaminate`` (reference: the task's evaluation split, ...).
        answers: ``{config: <predict config>, field: text, overrides: [...]}``: answer the questions (QA tasks).
        score: options of ``synthtune score mauve`` (reference, featurizer, clusters, ...).
        export: ``{name: <card title>, push_to_hub: <repo id>, private: false}``.
        report: ``{samples: <rows shown per label>, field: <text field shown>}``.
        stages: run only these stages (comma-separated); the ones before them must have finished.
        from_stage: run this stage and every one after it.
    """
    if not root:
        raise SynthtuneError("the pipeline needs a root folder for its stages; add `root: runs/<name>` to its YAML "
                             "or pass --root")
    done = run_pipeline(root, {"fit": fit, "predict": predict, "curate": curate, "decontaminate": decontaminate,
                               "answers": answers, "score": score, "export": export, "report": report},
                        stages=stages, from_stage=from_stage)
    table = Table(title=f"pipeline {root}")
    for column in ("stage", "status", "rows", "seconds"):
        table.add_column(column)
    for name, manifest in done.items():
        table.add_row(name, "ran" if manifest["ran"] else "up to date", str(manifest.get("rows", "")),
                      str(manifest.get("seconds", "")))
    Console().print(table)
    return done
