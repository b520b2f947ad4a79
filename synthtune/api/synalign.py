"""``synthtune synalign select`` and ``synthtune synalign evaluate``: SynAlign's data steps (Ren et al.).

* ``select`` embeds a labelled real pool, picks demonstration clusters by GP exploration-aware sampling
  and writes them as JSONL (a ``cluster`` id per row), with a coverage PNG comparing GP with random
  sampling by ball and convex-hull coverage (the paper's Fig. 4) and, with ``--tau_sweep``, coverage
  against the GP length scale τ (Fig. 5).
* ``evaluate`` trains a classifier (logistic regression on frozen sentence embeddings, or soft-prompt
  tuning) on real only, synthetic only and real + synthetic rows (unweighted, MMD-resampled, and a
  random same-size control), and reports accuracy, macro-F1 and MMD² before and after resampling,
  with a PCA or t-SNE map.

Generation and weight learning are Lightning runs (``configs/synalign/``); every step reads and
writes JSONL, so each can be swapped for another method's output.
"""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import torch

from synthtune.components.encoders import DEFAULT_FEATURIZER, featurize
from synthtune.components.synalign.coverage import (
    coverage_curve,
    covering_radius,
    hull_coverage_curve,
    kth_neighbour_scale,
    plot_coverage,
    plot_tau_sweep,
    pool_projection,
    random_order,
)
from synthtune.components.synalign.downstream import mmd2_between, train_and_score
from synthtune.components.synalign.gp_sampler import gp_select, split_budget
from synthtune.components.synalign.mmd import resolve_bandwidths
from synthtune.components.synalign.sample_weights import resample
from synthtune.api.synalign_prompt_tuning import PromptTuningClassifier
from synthtune.datamodules.fewshot import synthetic_columns
from synthtune.curation.embedding_map import Projection, plot_embedding_map
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_json, atomic_write_jsonl
from synthtune.records import read_records
from synthtune.tasks import TaskSpec, load_task, read_labeled

log = logging.getLogger(__name__)


def labelled_texts(path: str | Path, task: TaskSpec) -> tuple[list[str], np.ndarray]:
    """Texts (pair tasks: ``text_a`` and ``text_b`` joined by a space) and integer labels of a labelled file."""
    rows = read_labeled(path, task)
    return [" ".join(r[f] for f in task.text_fields) for r in rows], np.asarray([r["label"] for r in rows], dtype=np.int64)


def first_of_each_text(texts: list[str], labels: np.ndarray, source: str) -> np.ndarray:
    """Indices of the first row of each distinct text (whitespace at the ends ignored), so that a selection never
    shows the same text twice; one warning gives how many repeats were dropped and how many had another label."""
    first: dict[str, int] = {}
    conflicting = 0
    for i, text in enumerate(texts):
        kept = first.setdefault(text.strip(), i)
        conflicting += kept != i and labels[kept] != labels[i]
    if len(first) < len(texts):
        log.warning("%s: %d repeated text(s) dropped from the pool (the first of each kept%s)", source,
                    len(texts) - len(first), f"; {conflicting} of them had another label" if conflicting else "")
    return np.asarray(sorted(first.values()), dtype=np.int64)


def _check_scale(flag: str, value: float | None, zero_ok: bool) -> None:
    if value is not None and (not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok)):
        raise SynthtuneError(f"{flag} must be a number {'>= 0' if zero_ok else '> 0'} (got {value}); or pass 'auto'")


def select(
    task: Optional[str],
    output: str,
    budget: int,
    cluster_size: int = 4,
    pool: Optional[str] = None,
    policy: Literal["average"] = "average",
    tau: Union[float, Literal["auto"], None] = None,
    r: Union[float, Literal["auto"], None] = None,
    noise: float = 1e-4,
    pool_limit: Optional[int] = None,
    featurizer: str = DEFAULT_FEATURIZER,
    random_trials: int = 5,
    coverage_png: Optional[str] = None,
    tau_sweep: Optional[list[float]] = None,
    seed: int = 0,
    text_field: str = "text",
    label_field: str = "label",
    label_names: Optional[list[str]] = None,
) -> dict[str, Any]:
    """Pick diverse demonstrations from a labelled real pool by GP exploration-aware sampling (SynAlign Sec. 3.1).

    Writes the demonstrations, ``<output>.report.json`` and a coverage PNG (GP vs random selection, ball and
    convex-hull coverage against the points selected); with ``tau_sweep``, also ``<output>.tau_sweep.png``.

    Args:
        task: task name (data/<task>) or folder with meta.json (label names); null with a pool of your own (its
            label names come from label_names or the pool).
        output: where the selected demonstrations go (JSONL).
        budget: total demonstrations to select.
        cluster_size: demonstrations per GP step: the max-variance row and its nearest same-label
            neighbours, shown together to the generator (1: single demonstrations).
        pool: labelled real pool (JSONL, CSV, Parquet, ...); default data/<task>/train.jsonl. Repeated texts are
            dropped (the first of each kept), so no text is selected twice.
        policy: per-label budget policy (average: an even split).
        tau: GP RBF length scale > 0, or auto (median distance to the N/budget-th neighbour).
        r: coverage radius >= 0, or auto (= tau).
        noise: GP noise variance.
        pool_limit: use a seeded random subset of this many pool rows.
        featurizer: sentence embedder (minilm or a causal LM name/folder).
        random_trials: random selections averaged for the coverage baseline.
        coverage_png: coverage plot path (default <output>.coverage.png).
        tau_sweep: factors of tau (e.g. [0.25, 0.5, 1, 2, 4]); the selection is repeated at each tau = factor x tau and
            its final ball (radius r) and convex-hull coverage are plotted against tau in <output>.tau_sweep.png.
        seed: random seed.
        text_field: the pool's text column (single-sentence tasks).
        label_field: the pool's label column (a label name or its index).
        label_names: the label names in index order; default the task's, else the pool's distinct labels.
    """
    start = time.perf_counter()
    tau = None if tau == "auto" else tau
    r = None if r == "auto" else r
    _check_scale("--tau", tau, zero_ok=False)
    _check_scale("--r", r, zero_ok=True)
    if not (math.isfinite(noise) and noise > 0):
        raise SynthtuneError(f"--noise must be a positive number, got {noise}; try 1e-4")
    if budget < 1:
        raise SynthtuneError(f"--budget must be >= 1, got {budget}")
    if cluster_size < 1:
        raise SynthtuneError(f"--cluster_size must be >= 1, got {cluster_size}; use 1 for single demonstrations")
    if tau_sweep is not None and (not tau_sweep or not all(math.isfinite(f) and f > 0 for f in tau_sweep)):
        raise SynthtuneError(f"--tau_sweep must be a list of positive factors of tau, got {tau_sweep}; "
                             f"e.g. --tau_sweep '[0.25, 0.5, 1, 2, 4]'")
    if task is None and pool is None:
        raise SynthtuneError("synalign select needs --task (a task folder) or --pool (labelled rows of your own)")
    spec = load_task(task, label_names, text_field=text_field, label_field=label_field, data=pool)
    pool_path = Path(pool) if pool else spec.folder / "train.jsonl"
    texts, labels = labelled_texts(pool_path, spec)
    rows = read_records(pool_path)  # the rows as given, written back with the selection's fields
    index = first_of_each_text(texts, labels, str(pool_path))
    repeats = len(rows) - len(index)
    if pool_limit is not None and pool_limit < len(index):
        if pool_limit < 1:
            raise SynthtuneError(f"--pool_limit must be >= 1, got {pool_limit}")
        index = np.sort(index[np.random.default_rng(seed).permutation(len(index))[:pool_limit]])
    if budget > len(index):
        raise SynthtuneError(f"the real pool has {len(index)} points, fewer than --budget {budget}; "
                             f"lower --budget or add real examples (or raise --pool_limit)")
    sub_labels = labels[index]
    counts = {int(k): int((sub_labels == k).sum()) for k in np.unique(sub_labels)}
    split_budget(counts, budget, policy)  # fail before embedding when a label is too small
    emb = torch.from_numpy(featurize([texts[i] for i in index], featurizer))
    auto = kth_neighbour_scale(emb, max(1, round(len(index) / budget)), seed=seed)
    tau = tau if tau is not None else auto
    radius = r if r is not None else tau
    selection = gp_select(emb, budget, labels=sub_labels, tau=tau, noise=noise, seed=seed, policy=policy,
                          cluster_size=cluster_size)

    out_rows = []
    for step in selection.steps:
        original = int(index[step.index])
        row = dict(rows[original])
        if "text" not in row and not spec.is_pair:
            row["text"] = texts[original]  # what the generation step reads by default
        row.update({"label": int(labels[original]), "label_name": spec.label_names[labels[original]],
                    "pool_index": original, "selection_step": step.step, "cluster": step.cluster,
                    "gp_variance": step.variance})
        out_rows.append(row)
    out = Path(output)
    atomic_write_jsonl(out, out_rows)

    gp_curve = coverage_curve(emb, selection.indices, radius)
    plane = pool_projection(emb, seed=seed)
    gp_hull = hull_coverage_curve(plane, selection.indices)
    gen = np.random.default_rng(seed)
    random_orders = [random_order(sub_labels, selection.budgets, gen) for _ in range(max(1, random_trials))]
    random_curves = [coverage_curve(emb, order, radius) for order in random_orders]
    random_curve = np.mean(random_curves, axis=0)
    random_hull = np.mean([hull_coverage_curve(plane, order) for order in random_orders], axis=0)
    random_name = f"random (mean of {len(random_curves)})"
    png = Path(coverage_png) if coverage_png else out.with_name(out.name + ".coverage.png")
    plot_coverage({"GP exploration": gp_curve, random_name: random_curve}, png, tau, radius,
                  hull_curves={"GP exploration": gp_hull, random_name: random_hull})
    report = {
        "task": spec.name, "pool": str(pool_path), "pool_size": len(index), "pool_repeats_dropped": repeats,
        "budget": budget,
        "cluster_size": cluster_size, "clusters": len({step.cluster for step in selection.steps}),
        "budgets": {spec.label_names[k]: v for k, v in selection.budgets.items()},
        "tau": tau, "r": radius, "auto_scale": auto, "noise": noise, "seed": seed,
        "coverage_gp": float(gp_curve[-1]), "coverage_random": float(random_curve[-1]),
        "coverage_random_trials": [float(c[-1]) for c in random_curves],
        "hull_coverage_gp": float(gp_hull[-1]), "hull_coverage_random": float(random_hull[-1]),
        "covering_radius_gp": covering_radius(emb, selection.indices),
        "covering_radius_random": float(np.mean([covering_radius(emb, o) for o in random_orders])),
        "output": str(out), "coverage_png": str(png),
    }
    if tau_sweep:
        sweep = []
        for factor in tau_sweep:
            picks = gp_select(emb, budget, labels=sub_labels, tau=factor * tau, noise=noise, seed=seed, policy=policy,
                              cluster_size=cluster_size).indices
            sweep.append({"factor": factor, "tau": factor * tau, "coverage_ball": float(coverage_curve(emb, picks, radius)[-1]),
                          "coverage_hull": float(hull_coverage_curve(plane, picks)[-1])})
        taus = [row["tau"] for row in sweep]
        sweep_png = out.with_name(out.name + ".tau_sweep.png")
        plot_tau_sweep(taus, {f"GP, ball (r={radius:.3g})": [row["coverage_ball"] for row in sweep],
                              "GP, convex hull": [row["coverage_hull"] for row in sweep]}, sweep_png, budget,
                       baselines={f"{random_name}, ball": report["coverage_random"],
                                  f"{random_name}, convex hull": report["hull_coverage_random"]})
        report.update({"tau_sweep": sweep, "tau_sweep_png": str(sweep_png)})
    report["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(out.with_name(out.name + ".report.json"), report)
    return report


Classifier = Literal["logreg", "prompt_tuning"]

REAL = "real only"
SYNTHETIC = "synthetic only (unweighted)"
MIXED = "real + synthetic (unweighted)"
RESAMPLED = "synthetic only (SynAlign, MMD-resampled)"
MIXED_RESAMPLED = "real + synthetic (SynAlign, MMD-resampled)"
MIXED_RANDOM = "real + synthetic (random same-size subset, control)"


def generated_rows(path: str, spec: TaskSpec) -> list[dict[str, Any]]:
    """A generator's labelled rows (``text``; ``label``, or the real data's ``label_field`` when every row has it)."""
    return read_labeled(path, synthetic_columns(read_records(path), spec))


def random_control(num_synthetic: int, resampled_path: str, size: int, seed: int) -> np.ndarray:
    """Synthetic row indices for the control: ``size`` rows drawn uniformly, with replacement exactly when the
    MMD resampling drew with replacement (its rows' ``params.replace``; without it: when ``size`` exceeds the set)."""
    first = read_records(resampled_path)[:1]
    replace = bool(((first[0].get("params") or {}) if first else {}).get("replace", size > num_synthetic))
    uniform = torch.ones(num_synthetic, dtype=torch.float64)
    return resample(uniform, size, replace=replace, seed=seed).numpy()


def evaluate(
    task: Optional[str],
    real: str,
    synthetic: str,
    resampled: Optional[str] = None,
    test: Optional[str] = None,
    test_limit: Optional[int] = None,
    featurizer: str = DEFAULT_FEATURIZER,
    bandwidth: Union[float, Literal["median", "mixture"]] = "median",
    classifier: Classifier = "logreg",
    C: float = 1.0,
    prompt_tuning_config: Optional[str] = None,
    prompt_tuning_steps: Optional[int] = None,
    projection: Projection = "pca",
    output: Optional[str] = None,
    plot: Optional[str] = None,
    seed: int = 0,
    text_field: str = "text",
    label_field: str = "label",
    label_names: Optional[list[str]] = None,
) -> dict[str, Any]:
    """Downstream check: accuracy and macro-F1 of a classifier trained on real, synthetic and mixed training sets.

    The training sets are the rows of issue 12's table: real only; synthetic only (unweighted); real +
    synthetic (unweighted); and, with ``resampled``, synthetic only (MMD-resampled), real + the MMD-resampled
    rows, and real + a random same-size subset of the synthetic rows (the control). Each trains a fresh
    classifier scored on the task's test split; the report also holds MMD² to the real rows before and after
    resampling and a PCA or t-SNE map.

    The real and test rows are the user's, read by ``text_field``/``label_field``; the synthetic and resampled rows
    are a generator's (``text``, and ``label`` unless every row has ``label_field``), as prompt tuning reads them.

    Args:
        task: task name (data/<task>) or folder with meta.json; null with rows of your own (then ``test`` is
            required and the label names come from label_names or the real rows).
        real: few-shot real rows (JSONL, CSV, Parquet, ...), e.g. the selected demonstrations.
        synthetic: unweighted synthetic rows (a generator's ``text`` and ``label``).
        resampled: MMD-resampled synthetic rows.
        test: labelled test rows (default: the task's test/validation split).
        test_limit: evaluate on a seeded subset of this many test rows.
        featurizer: frozen embedder for logistic regression, MMD and the map (minilm or a causal LM name/folder).
        bandwidth: MMD bandwidth: median, mixture or a number.
        classifier: logreg (logistic regression on frozen featurizer embeddings, fast) or prompt_tuning
            (PromptTuningModule: a soft prompt on a frozen LM, trained with a Lightning Trainer per training set).
        C: inverse L2 strength of the logistic regression.
        prompt_tuning_config: Lightning config whose model is a PromptTuningModule (template, label words,
            backbone, prompt length, lr) and whose trainer.max_steps / data batch sizes are used; default
            configs/prompt_tuning/<task>.yaml.
        prompt_tuning_steps: training steps per set (default: the config's trainer.max_steps).
        projection: 2-D map of the embeddings (pca or tsne).
        output: report JSON (default <synthetic dir>/synalign_eval.json).
        plot: embedding map PNG (default next to the report).
        seed: random seed (classifier, control subset, test subset, map).
        text_field: the text column of the real and test rows (single-sentence tasks).
        label_field: the label column of the real and test rows (a label name or its index).
        label_names: the label names in index order; default the task's, else the real rows' (the label_name
            select wrote beside each index, or the distinct labels, sorted).
    """
    start = time.perf_counter()
    if classifier not in ("logreg", "prompt_tuning"):
        raise SynthtuneError(f"--classifier must be logreg or prompt_tuning, got {classifier!r}")
    if task is None and test is None:
        raise SynthtuneError("synalign evaluate needs --test (labelled rows to score on) with rows of your own, or "
                             "--task (a task folder with a test split)")
    spec = load_task(task, label_names, text_field=text_field, label_field=label_field, data=real)
    test_path = Path(test) if test else spec.eval_path()
    report_file = Path(output) if output else Path(synthetic).with_name("synalign_eval.json")
    tuner = PromptTuningClassifier.from_config(prompt_tuning_config or f"configs/prompt_tuning/{spec.name}.yaml",
                                               prompt_tuning_steps, seed) if classifier == "prompt_tuning" else None
    real_rows, test_rows = read_labeled(real, spec), read_labeled(test_path, spec)
    syn_rows = generated_rows(synthetic, spec)
    if test_limit is not None and test_limit < len(test_rows):
        if test_limit < 1:
            raise SynthtuneError(f"--test_limit must be >= 1, got {test_limit}")
        keep = np.sort(np.random.default_rng(seed).permutation(len(test_rows))[:test_limit])
        test_rows = [test_rows[i] for i in keep]
    res_rows = generated_rows(resampled, spec) if resampled else []
    control = random_control(len(syn_rows), resampled, len(res_rows), seed) if resampled else np.empty(0, dtype=np.int64)
    control_rows = [syn_rows[i] for i in control]

    def texts(rows: list[dict[str, Any]]) -> list[str]:
        return [" ".join(r[f] for f in spec.text_fields) for r in rows]

    emb = {"real": featurize(texts(real_rows), featurizer), "syn": featurize(texts(syn_rows), featurizer)}
    if resampled:
        emb["res"] = featurize(texts(res_rows), featurizer)
    x_test, y_test = featurize(texts(test_rows), featurizer), np.asarray([r["label"] for r in test_rows])
    # name -> (rows, embeddings) of each training set; mixed sets are the real rows followed by the synthetic ones
    sets: dict[str, tuple[list[dict[str, Any]], np.ndarray]] = {
        REAL: (real_rows, emb["real"]), SYNTHETIC: (syn_rows, emb["syn"]),
        MIXED: (real_rows + syn_rows, np.vstack([emb["real"], emb["syn"]]))}
    if resampled:
        sets[RESAMPLED] = (res_rows, emb["res"])
        sets[MIXED_RESAMPLED] = (real_rows + res_rows, np.vstack([emb["real"], emb["res"]]))
        sets[MIXED_RANDOM] = (real_rows + control_rows, np.vstack([emb["real"], emb["syn"][control]]))

    rows = []
    for name, (train_rows, x) in sets.items():
        y = np.asarray([r["label"] for r in train_rows], dtype=np.int64)
        if tuner is not None:
            scores = tuner.scores(spec, train_rows, test_rows, report_file.with_name(f"{report_file.stem}_prompt_tuning") / _slug(name))
        else:
            scores = train_and_score(x, y, x_test, y_test, C, seed)
        if scores is None:
            log.warning("%s has a single label, so no classifier can be trained on it; its row is left empty", name)
        rows.append({"train_set": name, "rows": len(train_rows), "real_rows": len(real_rows) if name.startswith("real") else 0,
                     "labels": len(np.unique(y)), **(scores or {"accuracy": None, "macro_f1": None})})

    syn_t, real_t, test_t = (torch.from_numpy(a) for a in (emb["syn"], emb["real"], x_test))
    bandwidths = resolve_bandwidths(bandwidth, syn_t, real_t, seed=seed)
    mmd = {"bandwidths": bandwidths,
           "before_vs_fewshot_real": mmd2_between(syn_t, real_t, bandwidths, seed),
           "before_vs_test": mmd2_between(syn_t, test_t, bandwidths, seed)}
    if resampled:
        res_t = torch.from_numpy(emb["res"])
        mmd["after_vs_fewshot_real"] = mmd2_between(res_t, real_t, bandwidths, seed)
        mmd["after_vs_test"] = mmd2_between(res_t, test_t, bandwidths, seed)
        mmd["control_vs_test"] = mmd2_between(syn_t[torch.from_numpy(control)], test_t, bandwidths, seed)
    mmd["fewshot_real_vs_test"] = mmd2_between(real_t, test_t, bandwidths, seed)

    png = Path(plot) if plot else report_file.with_suffix(".png")
    panels = {"before: synthetic": emb["syn"]}
    if resampled:
        panels["after: MMD-resampled"] = emb["res"]
    plot_embedding_map(x_test, panels, png, title=f"{featurizer} embeddings: real vs synthetic", method=projection,
                       marked=emb["real"], real_label="real (test)", max_points=1000, seed=seed)
    described = (f"logistic regression (C={C}) on frozen {featurizer} embeddings" if tuner is None
                 else tuner.description())
    report = {"task": spec.name, "test": str(test_path), "test_rows": len(test_rows), "featurizer": featurizer,
              "classifier": described, "seed": seed, "results": rows, "mmd2": mmd, "plot": str(png),
              "seconds": round(time.perf_counter() - start, 2)}
    atomic_write_json(report_file, report)
    report["output"] = str(report_file)
    return report


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")

