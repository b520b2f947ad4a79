"""``synthtune filter``: keep the labelled synthetic rows whose text agrees with their label, per label."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from synthtune.api.files import Result, Rows, check_distinct, read_rows, report_path, source_name
from synthtune.curation.label_filter import (check_keep_rule, classifier_scores, compose_run, generator_logprobs,
                                             label_margin, label_ratio,
                                             judge_for_task, keep_per_label, load_dawgen_run, row_text,
                                             run_datamodule)
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_json, atomic_write_jsonl
from synthtune.records import require_fields
from synthtune.tasks import TaskSpec, load_task, read_labeled


def _mean(values: np.ndarray) -> Optional[float]:
    return float(values.mean()) if len(values) else None


def filter_rows(
    input: Rows,
    output: Optional[str] = None,
    scorer: Literal["generator", "classifier"] = "generator",
    run: Optional[str] = None,
    task: Optional[str] = None,
    real: Optional[str] = None,
    keep_fraction: Optional[float] = 0.5,
    threshold: Optional[float] = None,
    judge: bool = True,
    judge_train: Optional[str] = None,
    report: Optional[str] = None,
    label_field: str = "label",
    featurizer: str = "minilm",
    batch_size: int = 16,
    device: str = "cpu",
    seed: int = 0,
    strict: bool = False,
) -> Result:
    """Keep the labelled synthetic rows whose text agrees with their label, per label (label-consistency filter).

    Scores every row, then keeps, within each label, the best-scoring keep_fraction of its rows (round half
    up: 7 rows at 0.5 keep 4; equal scores keep the earlier row) or every row scoring >= threshold. Writes the
    kept rows (each with its fields and a ``filter_score``) to ``output`` and a JSON report (rows and kept rows
    per label, the rule, and the on-label rate before/after under an independent judge) to ``report``; returns
    the report, the kept rows as its ``rows`` (a ``datasets.Dataset``).

    Args:
        input: labelled synthetic rows (JSONL; from Python also a ``datasets.Dataset`` or a list of dicts):
            ``text`` (pair tasks: ``text_a``, ``text_b``) and a label.
        output: where to write the kept rows (JSONL; from Python it may be left out: nothing is written).
        scorer: ``generator``: the DawGen run's own per-label prompts, log p(x|Q_y) − log Σ_l p(x|Q_l) (needs
            --run); ``classifier``: log p(y|x) of a logistic regression on MiniLM embeddings of the real rows.
        run: a DawGen run folder (``config.yaml``, ``checkpoints/last.ckpt``): the generator scorer's model;
            it also gives the task and, for the classifier, the real rows (its few-shot training rows).
        task: the task (folder name under data/ or a folder with meta.json); default: the run's task.
        real: real labelled rows the classifier is trained on (default: the run's training rows).
        keep_fraction: share of each label's rows to keep, in (0, 1]; null to use threshold.
        threshold: keep every row with score >= threshold (pass --keep_fraction null with it).
        judge: report the on-label rate before and after under a TF-IDF + logistic-regression judge trained on
            the task's full train split (used only for the report).
        judge_train: the judge's training rows (default: the task's train.jsonl).
        report: where to write the JSON report (default: <output>.report.json; none without output).
        label_field: the field holding each row's label (an index or a label name).
        featurizer: the classifier scorer's sentence embedder (``minilm``, or a featurizer name).
        batch_size: rows per forward pass of the generator scorer.
        device: torch device of the generator scorer (``cpu``, ``cuda``).
        seed: random state of the classifiers.
        strict: fail on broken JSON lines instead of skipping them.
    """
    start = time.perf_counter()
    check_keep_rule(keep_fraction, threshold)
    out = Path(output) if output is not None else None
    report_file = Path(report) if report else report_path(out) if out is not None else None
    check_distinct(out, input, real, judge_train)
    check_distinct(report_file, input, real, judge_train, output)
    if scorer not in ("generator", "classifier"):
        raise SynthtuneError(f"unknown scorer {scorer!r}; use --scorer generator or --scorer classifier")
    rows, broken = read_rows(input, strict)
    if not rows:
        raise SynthtuneError(f"{source_name(input)}: no rows to filter; check the input")
    if scorer == "generator" and not run:
        raise SynthtuneError("the generator scorer needs the DawGen run that made the rows; pass --run <run folder> "
                             "(or --scorer classifier)")

    module = datamodule = None
    if run and scorer == "generator":
        module, datamodule = load_dawgen_run(run, device)
    elif run:
        datamodule = run_datamodule(compose_run(run))
    spec: TaskSpec
    if task:
        spec = load_task(task)
    elif datamodule is not None:
        spec = datamodule.load_task()
    else:
        raise SynthtuneError("the classifier scorer needs the task (its labels, its train split for the judge); "
                             "pass --task <name or folder>, or --run <DawGen run folder>")
    if module is not None and module.hparams.num_labels != spec.num_labels:
        raise SynthtuneError(f"the run has {module.hparams.num_labels} label prompts but task {spec.name!r} has "
                             f"{spec.num_labels} labels; pass the run's own task (or none)")

    fields = spec.text_fields
    require_fields(rows, (*fields, label_field), source_name(input))
    require_fields(rows, fields, source_name(input), text=True)
    labels = np.array([spec.label_index(r[label_field], source_name(input), i) for i, r in enumerate(rows)], dtype=np.int64)
    texts = [row_text(r, fields) for r in rows]

    real_path, margins = None, None
    if scorer == "generator":
        logprobs = generator_logprobs(module, datamodule, rows, batch_size=batch_size)
        scores, margins = label_ratio(logprobs, labels), label_margin(logprobs, labels)
    else:
        if real:
            real_path, real_rows = str(real), read_labeled(real, spec, strict=strict)
        elif datamodule is not None:
            real_path, real_rows = f"{run} (its training rows)", datamodule.load_rows()
        else:
            raise SynthtuneError("the classifier scorer trains on real rows; pass --real <labelled JSONL> (e.g. "
                                 f"{spec.kshot_path(42)}) or --run <DawGen run folder>")
        scores = classifier_scores([row_text(r, fields) for r in real_rows], [r["label"] for r in real_rows],
                                   texts, labels, featurizer=featurizer, seed=seed)

    # the generator's ratios saturate at 0 on its own samples; its margins (the same order) keep the rows apart
    kept = keep_per_label(scores, labels, keep_fraction, threshold, rank_by=margins)
    extra = (lambda i: {"filter_margin": float(margins[i])}) if margins is not None else (lambda i: {})
    kept_rows = [{**rows[i], "filter_score": float(scores[i]), **extra(i)} for i in kept]
    if out is not None:
        atomic_write_jsonl(out, kept_rows)

    kept_mask = np.zeros(len(rows), dtype=bool)
    kept_mask[kept] = True
    per_label = {}
    for index, name in enumerate(spec.label_names):
        mine = labels == index
        per_label[name] = {"label": index, "rows": int(mine.sum()), "kept": int((mine & kept_mask).sum()),
                           "mean_score": _mean(scores[mine]), "mean_kept_score": _mean(scores[mine & kept_mask]),
                           **({} if margins is None else {
                               "median_margin": float(np.median(margins[mine])),
                               "lowest_kept_margin": float(margins[mine & kept_mask].min()) if (mine & kept_mask).any()
                               else None})}

    judged = None
    if judge:
        judge_path = Path(judge_train) if judge_train else spec.folder / "train.jsonl"
        if not judge_path.is_file():
            raise SynthtuneError(f"the judge trains on {judge_path}, which does not exist; pass --judge_train "
                                 "<labelled JSONL> (the task's full train split) or --judge false")
        try:
            eval_path: Optional[Path] = spec.eval_path()
        except SynthtuneError:
            eval_path = None
        evaluation = read_labeled(eval_path, spec, strict=strict) if eval_path else None
        the_judge = judge_for_task(read_labeled(judge_path, spec, strict=strict), evaluation, fields, seed=seed)
        judged = {"model": "tfidf word 1-2 grams + logistic regression", "train_path": str(judge_path),
                  "train_rows": the_judge.train_rows, "eval_path": str(eval_path) if eval_path else None,
                  "test_accuracy": the_judge.test_accuracy,
                  "on_label_before": the_judge.on_label_rate(texts, labels),
                  "on_label_after": the_judge.on_label_rate([texts[i] for i in kept], labels[kept])}

    rule = ({"keep_fraction": float(keep_fraction), "rounding": "floor(keep_fraction * rows + 0.5) per label"}
            if keep_fraction is not None else {"threshold": float(threshold)})
    result = {
        "command": "filter",
        "input_path": source_name(input),
        "output_path": source_name(output),
        "scorer": scorer,
        "score": ("log p(x|Q_y) - log sum_l p(x|Q_l)" if scorer == "generator"
                  else f"log p(y|x), logistic regression on {featurizer} embeddings of the real rows"),
        "run": str(run) if run else None,
        "task": spec.name,
        "real_path": real_path,
        "keep_rule": rule,
        "input": len(rows) + broken,
        "broken_lines_skipped": broken,
        "output": len(kept),
        "labels": per_label,
        "judge": judged,
        "seconds": round(time.perf_counter() - start, 3),
    }
    if report_file is not None:
        atomic_write_json(report_file, result)
    return Result(result, kept=kept_rows)

