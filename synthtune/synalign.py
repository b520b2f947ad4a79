"""``synthtune synalign select`` and ``synthtune synalign evaluate``: SynAlign's data steps (Ren et al.).

* ``select`` embeds a labelled real pool, picks demonstrations by GP exploration-aware sampling
  (:func:`synthtune.components.synalign.gp_sampler.gp_select`, per-label ``average`` budget) and writes them as
  JSONL, with a coverage PNG comparing GP with random sampling (the paper's Fig. 4) and a JSON report.
* ``evaluate`` trains logistic regression on frozen sentence embeddings of (a) the unweighted
  synthetic rows, (b) the MMD-resampled rows and (c) the few-shot real rows, reports accuracy and
  macro-F1 on the task's test split and the MMD² before and after resampling, and draws a PCA or t-SNE
  map of real against synthetic before and after.

Generation and weight learning are Lightning runs (``configs/synalign/``); every step reads and
writes JSONL, so each can be swapped for another method's output. Each command is ``*_main(argv) -> int``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthtune.components.synalign.coverage import coverage_curve, plot_coverage
from synthtune.components.synalign.gp_sampler import gp_select, split_budget
from synthtune.components.synalign.mmd import mmd2_minibatch, resolve_bandwidths
from synthtune.curation.featurize import DEFAULT_FEATURIZER, featurize
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes, atomic_write_jsonl
from synthtune.records import read_records
from synthtune.tasks import TaskSpec, load_task

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- helpers
def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _positive_or_auto(value: str) -> float | None:
    """argparse type: ``auto`` → None, else a number (checked later, so the message can name the flag)."""
    if value == "auto":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


def row_text(row: dict[str, Any], task: TaskSpec, source: str, index: int) -> str:
    """The text of a labelled row (pair tasks: ``text_a`` and ``text_b`` joined by a space)."""
    missing = [f for f in task.text_fields if f not in row]
    if missing:
        raise SynthtuneError(f"{source}: row {index} lacks field(s) {', '.join(missing)} "
                             f"(it has {', '.join(sorted(row)) or 'no fields'}); {task.name} rows need "
                             f"{', '.join(task.text_fields)} and label")
    return " ".join(str(row[f]) for f in task.text_fields)


def labelled_texts(path: str | Path, task: TaskSpec) -> tuple[list[dict[str, Any]], list[str], np.ndarray]:
    """Rows, texts and integer labels of a labelled JSONL file (one-line errors for bad rows)."""
    rows = read_records(path)
    if not rows:
        raise SynthtuneError(f"{path}: no rows; check the file")
    texts, labels = [], []
    for i, row in enumerate(rows):
        if "label" not in row:
            raise SynthtuneError(f"{path}: row {i} has no 'label'; every row needs a label of {list(task.label_names)}")
        texts.append(row_text(row, task, str(path), i))
        labels.append(task.label_index(row["label"], str(path), i))
    return rows, texts, np.asarray(labels, dtype=np.int64)


def kth_neighbour_scale(emb: torch.Tensor, k: int, max_points: int = 2000, seed: int = 0) -> float:
    """Median distance from a point to its k-th nearest pool neighbour (over a seeded subsample of queries).

    With ``k = N / budget`` this is about the radius at which ``budget`` well-spread balls cover the pool,
    so it is the default GP length scale τ and coverage radius r.
    """
    x = emb.double()
    gen = torch.Generator().manual_seed(seed)
    queries = x[torch.randperm(x.shape[0], generator=gen)[:max_points]]
    sq = ((queries * queries).sum(1, keepdim=True) - 2 * queries @ x.T + (x * x).sum(1)).clamp_min(0)
    k = max(1, min(k, x.shape[0] - 1))
    kth = sq.topk(k + 1, dim=1, largest=False).values[:, k].sqrt()  # column 0 is the point itself
    value = float(kth.median())
    if not value > 0:
        raise SynthtuneError("the pool embeddings are (nearly) all identical, so no scale can be chosen; "
                             "check the texts or pass --tau and --r explicitly")
    return value


def covering_radius(emb: torch.Tensor, selected: Sequence[int]) -> float:
    """Largest distance from a pool point to its nearest selected point (smaller = the selection spans the pool)."""
    x = emb.double()
    s = x[torch.as_tensor(list(selected), dtype=torch.long)]
    sq = ((x * x).sum(1, keepdim=True) - 2 * x @ s.T + (s * s).sum(1)).clamp_min(0)
    return float(sq.min(dim=1).values.max().sqrt())


# --------------------------------------------------------------------------------------------- select
def build_select_parser() -> argparse.ArgumentParser:
    """The ``synthtune synalign select`` parser."""
    p = argparse.ArgumentParser(
        prog="synthtune synalign select",
        description="Pick diverse demonstrations from a labelled real pool by GP exploration-aware sampling (SynAlign Sec. 3.1).",
    )
    p.add_argument("--task", required=True, help="task name (data/<task>) or folder with meta.json (label names)")
    p.add_argument("--pool", default=None, help="labelled real pool (JSONL); default data/<task>/train.jsonl")
    p.add_argument("--output", required=True, help="where the selected demonstrations go (JSONL)")
    p.add_argument("--budget", type=int, required=True, help="total demonstrations to select")
    p.add_argument("--policy", default="average", choices=["average"], help="per-label budget policy (even split)")
    p.add_argument("--tau", type=_positive_or_auto, default=None,
                   help="GP RBF length scale τ > 0, or 'auto' (median distance to the N/budget-th neighbour)")
    p.add_argument("--r", type=_positive_or_auto, default=None, help="coverage radius r >= 0, or 'auto' (= τ)")
    p.add_argument("--noise", type=float, default=1e-4, help="GP noise variance (default 1e-4)")
    p.add_argument("--pool_limit", type=int, default=None, help="use a seeded random subset of this many pool rows")
    p.add_argument("--featurizer", default=DEFAULT_FEATURIZER, help="sentence embedder (default minilm)")
    p.add_argument("--random_trials", type=int, default=5, help="random selections averaged for the coverage baseline")
    p.add_argument("--coverage_png", default=None, help="coverage plot path (default <output>.coverage.png)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return p


def random_order(labels: np.ndarray, budgets: dict[int | None, int], gen: np.random.Generator) -> list[int]:
    """A random selection with the same per-label counts as ``budgets``, in random order."""
    picks: list[int] = []
    for key, count in budgets.items():
        rows = np.arange(len(labels)) if key is None else np.flatnonzero(labels == key)
        picks.extend(gen.choice(rows, size=count, replace=False).tolist())
    return gen.permutation(np.asarray(picks, dtype=np.int64)).tolist()


def run_select(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``synthtune synalign select``; returns the report (also written next to the output)."""
    start = time.perf_counter()
    for flag, value, low in (("--tau", args.tau, "> 0"), ("--r", args.r, ">= 0")):
        if value is not None and (not math.isfinite(value) or value < 0 or (flag == "--tau" and value == 0)):
            raise SynthtuneError(f"{flag} must be a number {low} (got {value}); or pass 'auto'")
    if not (math.isfinite(args.noise) and args.noise > 0):
        raise SynthtuneError(f"--noise must be a positive number, got {args.noise}; try 1e-4")
    if args.budget < 1:
        raise SynthtuneError(f"--budget must be >= 1, got {args.budget}")
    task = load_task(args.task)
    pool_path = Path(args.pool) if args.pool else task.folder / "train.jsonl"
    rows, texts, labels = labelled_texts(pool_path, task)
    index = np.arange(len(rows))
    if args.pool_limit is not None and args.pool_limit < len(rows):
        if args.pool_limit < 1:
            raise SynthtuneError(f"--pool_limit must be >= 1, got {args.pool_limit}")
        index = np.sort(np.random.default_rng(args.seed).permutation(len(rows))[: args.pool_limit])
    if args.budget > len(index):
        raise SynthtuneError(f"the real pool has {len(index)} points, fewer than --budget {args.budget}; "
                             f"lower --budget or add real examples (or raise --pool_limit)")
    sub_labels = labels[index]
    counts = {int(k): int((sub_labels == k).sum()) for k in np.unique(sub_labels)}
    split_budget(counts, args.budget, args.policy)  # fail before embedding when a label is too small
    emb = torch.from_numpy(featurize([texts[i] for i in index], args.featurizer))
    auto = kth_neighbour_scale(emb, max(1, round(len(index) / args.budget)), seed=args.seed)
    tau = args.tau if args.tau is not None else auto
    radius = args.r if args.r is not None else tau
    selection = gp_select(emb, args.budget, labels=sub_labels, tau=tau, noise=args.noise, seed=args.seed,
                          policy=args.policy)

    out_rows = []
    for step in selection.steps:
        original = int(index[step.index])
        row = dict(rows[original])
        row.update({"label": int(labels[original]), "label_name": task.label_names[labels[original]],
                    "pool_index": original, "selection_step": step.step, "gp_variance": step.variance})
        out_rows.append(row)
    output = Path(args.output)
    atomic_write_jsonl(output, out_rows)

    gp_curve = coverage_curve(emb, selection.indices, radius)
    gen = np.random.default_rng(args.seed)
    random_orders = [random_order(sub_labels, selection.budgets, gen) for _ in range(max(1, args.random_trials))]
    random_curves = [coverage_curve(emb, order, radius) for order in random_orders]
    random_curve = np.mean(random_curves, axis=0)
    png = Path(args.coverage_png) if args.coverage_png else output.with_name(output.name + ".coverage.png")
    plot_coverage({"GP exploration": gp_curve, f"random (mean of {len(random_curves)})": random_curve}, png, tau, radius)
    report = {
        "task": task.name, "pool": str(pool_path), "pool_size": len(index), "budget": args.budget,
        "budgets": {task.label_names[k]: v for k, v in selection.budgets.items()},
        "tau": tau, "r": radius, "auto_scale": auto, "noise": args.noise, "seed": args.seed,
        "coverage_gp": float(gp_curve[-1]), "coverage_random": float(random_curve[-1]),
        "coverage_random_trials": [float(c[-1]) for c in random_curves],
        "covering_radius_gp": covering_radius(emb, selection.indices),
        "covering_radius_random": float(np.mean([covering_radius(emb, o) for o in random_orders])),
        "output": str(output), "coverage_png": str(png), "seconds": round(time.perf_counter() - start, 2),
    }
    _write_json(output.with_name(output.name + ".report.json"), report)
    return report


def select_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synthtune synalign select``."""
    report = run_select(build_select_parser().parse_args(argv))
    print(f"selected {report['budget']} of {report['pool_size']} pool rows -> {report['output']}")
    print(f"coverage at r={report['r']:.3f} (tau={report['tau']:.3f}): GP {report['coverage_gp']:.3f}, "
          f"random {report['coverage_random']:.3f}; covering radius: GP {report['covering_radius_gp']:.3f}, "
          f"random {report['covering_radius_random']:.3f}; plot: {report['coverage_png']}")
    return 0


# --------------------------------------------------------------------------------------------- evaluate
def build_evaluate_parser() -> argparse.ArgumentParser:
    """The ``synthtune synalign evaluate`` parser."""
    p = argparse.ArgumentParser(
        prog="synthtune synalign evaluate",
        description="Downstream check: logistic regression on frozen embeddings trained on synthetic, "
                    "MMD-resampled synthetic and few-shot real rows; accuracy, macro-F1 and MMD² before/after.",
    )
    p.add_argument("--task", required=True, help="task name (data/<task>) or folder with meta.json")
    p.add_argument("--real", required=True, help="few-shot real rows (JSONL), e.g. the selected demonstrations")
    p.add_argument("--synthetic", required=True, help="unweighted synthetic rows (JSONL)")
    p.add_argument("--resampled", default=None, help="MMD-resampled synthetic rows (JSONL)")
    p.add_argument("--test", default=None, help="labelled test rows (default: the task's test/validation split)")
    p.add_argument("--test_limit", type=int, default=None, help="evaluate on a seeded subset of this many test rows")
    p.add_argument("--featurizer", default=DEFAULT_FEATURIZER, help="frozen embedder (default minilm)")
    p.add_argument("--bandwidth", default="median", help="MMD bandwidth: median, mixture or a number")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    p.add_argument("--projection", default="pca", choices=["pca", "tsne"], help="2-D map of the embeddings")
    p.add_argument("--output", default=None, help="report JSON (default <synthetic dir>/synalign_eval.json)")
    p.add_argument("--plot", default=None, help="embedding map PNG (default next to the report)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return p


def train_and_score(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, c: float,
                    seed: int) -> dict[str, float] | None:
    """Accuracy and macro-F1 of logistic regression trained on (x, y); ``None`` when y has one label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    if len(np.unique(y)) < 2:
        return None
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(x, y)
    pred = clf.predict(x_test)
    return {"accuracy": float(accuracy_score(y_test, pred)),
            "macro_f1": float(f1_score(y_test, pred, average="macro", labels=np.unique(y_test)))}


def _mmd2(a: torch.Tensor, b: torch.Tensor, bandwidths: list[float], seed: int) -> float:
    small = a.shape[0] <= 2048 and b.shape[0] <= 2048
    return mmd2_minibatch(a, b, bandwidths, num_batches=1 if small else 8, seed=seed)


def plot_embedding_panels(real: np.ndarray, fewshot: np.ndarray, panels: dict[str, np.ndarray], path: Path,
                          method: str = "pca", seed: int = 0) -> Path:
    """One scatter panel per synthetic set over the held-out real and few-shot real points, in a shared 2-D map."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stacks = [real, fewshot, *panels.values()]
    allx = np.concatenate(stacks, axis=0)
    if method == "tsne":
        from sklearn.manifold import TSNE

        coords = TSNE(n_components=2, random_state=seed, init="pca",
                      perplexity=min(30.0, max(2.0, (len(allx) - 1) / 3))).fit_transform(allx)
    else:
        from sklearn.decomposition import PCA

        coords = PCA(n_components=2, random_state=seed).fit_transform(allx)
    bounds = np.cumsum([0] + [len(s) for s in stacks])
    parts = [coords[bounds[i]: bounds[i + 1]] for i in range(len(stacks))]
    fig = Figure(figsize=(5.0 * len(panels), 4.5), dpi=110)
    FigureCanvasAgg(fig)
    for j, name in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        ax.scatter(parts[0][:, 0], parts[0][:, 1], s=5, c="0.7", label="real (test)")
        ax.scatter(parts[2 + j][:, 0], parts[2 + j][:, 1], s=6, c="tab:orange", alpha=0.6, label=name)
        ax.scatter(parts[1][:, 0], parts[1][:, 1], s=14, c="black", marker="x", label="real (few-shot)")
        ax.set_title(name)
        ax.legend(loc="best", fontsize=7)
    fig.suptitle(f"{method.upper()} of MiniLM embeddings: real vs synthetic")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return path


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``synthtune synalign evaluate``; returns the report (also written to ``--output``)."""
    start = time.perf_counter()
    task = load_task(args.task)
    test_path = Path(args.test) if args.test else task.eval_path()
    _, real_texts, real_y = labelled_texts(args.real, task)
    _, syn_texts, syn_y = labelled_texts(args.synthetic, task)
    _, test_texts, test_y = labelled_texts(test_path, task)
    if args.test_limit is not None and args.test_limit < len(test_texts):
        if args.test_limit < 1:
            raise SynthtuneError(f"--test_limit must be >= 1, got {args.test_limit}")
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(test_texts))[: args.test_limit])
        test_texts, test_y = [test_texts[i] for i in keep], test_y[keep]
    sets: dict[str, tuple[list[str], np.ndarray]] = {"synthetic (unweighted)": (syn_texts, syn_y)}
    if args.resampled:
        _, res_texts, res_y = labelled_texts(args.resampled, task)
        sets["synthetic (MMD-resampled)"] = (res_texts, res_y)
    sets["few-shot real only"] = (real_texts, real_y)

    emb = {name: featurize(texts, args.featurizer) for name, (texts, _) in sets.items()}
    x_test = featurize(test_texts, args.featurizer)
    x_real = emb["few-shot real only"]
    rows = []
    for name, (texts, y) in sets.items():
        scores = train_and_score(emb[name], y, x_test, test_y, args.C, args.seed)
        if scores is None:
            log.warning("%s has a single label, so no classifier can be trained on it; its row is left empty", name)
        rows.append({"train_set": name, "rows": len(texts), "labels": len(np.unique(y)),
                     **(scores or {"accuracy": None, "macro_f1": None})})

    try:
        spec: Any = float(args.bandwidth)
    except ValueError:
        spec = args.bandwidth
    syn_t, real_t, test_t = (torch.from_numpy(a) for a in (emb["synthetic (unweighted)"], x_real, x_test))
    bandwidths = resolve_bandwidths(spec, syn_t, real_t, seed=args.seed)
    mmd = {"bandwidths": bandwidths,
           "before_vs_fewshot_real": _mmd2(syn_t, real_t, bandwidths, args.seed),
           "before_vs_test": _mmd2(syn_t, test_t, bandwidths, args.seed)}
    if args.resampled:
        res_t = torch.from_numpy(emb["synthetic (MMD-resampled)"])
        mmd["after_vs_fewshot_real"] = _mmd2(res_t, real_t, bandwidths, args.seed)
        mmd["after_vs_test"] = _mmd2(res_t, test_t, bandwidths, args.seed)
    mmd["fewshot_real_vs_test"] = _mmd2(real_t, test_t, bandwidths, args.seed)

    output = Path(args.output) if args.output else Path(args.synthetic).with_name("synalign_eval.json")
    plot = Path(args.plot) if args.plot else output.with_suffix(".png")
    gen = np.random.default_rng(args.seed)
    shown = gen.permutation(len(x_test))[:1000]
    panels = {"before: synthetic": emb["synthetic (unweighted)"]}
    if args.resampled:
        panels["after: MMD-resampled"] = emb["synthetic (MMD-resampled)"]
    plot_embedding_panels(x_test[shown], x_real, panels, plot, args.projection, args.seed)
    report = {"task": task.name, "test": str(test_path), "test_rows": len(test_texts), "featurizer": args.featurizer,
              "classifier": f"logistic regression (C={args.C}) on frozen {args.featurizer} embeddings",
              "results": rows, "mmd2": mmd, "plot": str(plot), "seconds": round(time.perf_counter() - start, 2)}
    _write_json(output, report)
    report["output"] = str(output)
    return report


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``synthtune synalign evaluate``."""
    report = run_evaluate(build_evaluate_parser().parse_args(argv))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SynAlign downstream ({report['task']}, {report['test_rows']} test rows)")
    for column in ("train set", "rows", "accuracy", "macro-F1"):
        table.add_column(column, justify="left" if column == "train set" else "right")
    for row in report["results"]:
        table.add_row(row["train_set"], str(row["rows"]), _fmt(row["accuracy"]), _fmt(row["macro_f1"]))
    console = Console()
    console.print(table)
    console.print("MMD² " + ", ".join(f"{k}={_fmt(v)}" for k, v in report["mmd2"].items() if k != "bandwidths"))
    console.print(f"report: {report['output']}; map: {report['plot']}")
    return 0


# --------------------------------------------------------------------------------------------- dispatch
SUBCOMMANDS = {"select": select_main, "evaluate": evaluate_main}


def main(argv: Sequence[str] | None = None) -> int:
    """``synthtune synalign {select,evaluate} ...``: run the named data command."""
    argv = list(argv or [])
    if not argv or argv[0] not in SUBCOMMANDS:
        if argv and argv[0] in ("-h", "--help"):
            print("usage: synthtune synalign {select,evaluate} [options]  (add --help after a subcommand for its options)")
            return 0
        got = repr(argv[0]) if argv else "nothing"
        raise SynthtuneError(f"synthtune synalign needs a subcommand: select or evaluate (got {got})")
    return SUBCOMMANDS[argv[0]](argv[1:])
