"""Tables and figures of docs/results/synalign.md from the runs of run.sh (usage: python report.py RUN_ROOT).

Reads <root>/<task>/seed<s>/{eval.json, eval_pt.json, demos.jsonl.report.json, generate/...} and prints the
markdown tables (mean ± std over the seeds that finished, with n when fewer than three). Writes accuracy.png
(rows × tasks) next to this file and copies seed 0's embedding map, coverage curve and τ sweep of each task.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from synthtune.commands.sweep import mean_std
from synthtune.pipeline.report import plot_grouped_bars

HERE = Path(__file__).resolve().parent
TASKS = {"sst2": "SST-2", "ag_news": "AG News", "amazon_reviews": "Amazon"}
SEEDS = (0, 1, 2)
MMD = [("before_vs_fewshot_real", "synthetic vs few-shot real, before"),
       ("after_vs_fewshot_real", "synthetic vs few-shot real, after MMD resampling"),
       ("before_vs_test", "synthetic vs test, before"), ("after_vs_test", "synthetic vs test, after"),
       ("control_vs_test", "random same-size subset vs test"), ("fewshot_real_vs_test", "few-shot real vs test (floor)")]


def load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.is_file() else []


def cell(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "–"
    mean, std = mean_std([v * scale for v in values])
    n = f" (n={len(values)})" if len(values) < len(SEEDS) else ""
    return f"{mean:.{digits}f} ± {std:.{digits}f}{n}"


def norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def downstream(root: Path, report: str) -> tuple[str, dict]:
    evals = {t: [e for s in SEEDS if (e := load(root / t / f"seed{s}" / report))] for t in TASKS}
    names = list(dict.fromkeys(r["train_set"] for es in evals.values() for e in es for r in e["results"]))
    lines = ["| training data | rows | " + " | ".join(f"{TASKS[t]} acc | {TASKS[t]} F1" for t in TASKS) + " |",
             "|---|---|" + "---|---|" * len(TASKS)]
    values: dict[str, dict[str, list[float]]] = {}
    for name in names:
        cells, sizes = [], []
        for t, es in evals.items():
            found = [r for e in es for r in e["results"] if r["train_set"] == name and r["accuracy"] is not None]
            sizes += [f"{TASKS[t]} {np.mean([r['rows'] for r in found]):.0f}"] if found else []
            cells += [cell([r["accuracy"] for r in found]), cell([r["macro_f1"] for r in found])]
            values.setdefault(name, {})[TASKS[t]] = [100 * r["accuracy"] for r in found]
        lines.append(f"| {name} | {', '.join(sizes)} | " + " | ".join(cells) + " |")
    return "\n".join(lines), values


def main(root: Path) -> None:
    table, values = downstream(root, "eval.json")
    print("## Downstream: logistic regression on MiniLM (accuracy, macro-F1 in %)\n\n" + table + "\n")
    plot_grouped_bars(values, HERE / "accuracy.png", "test accuracy (%)",
                      title="SynAlign: logistic regression on MiniLM, mean ± std over 3 seeds")
    if any((root / t / f"seed{s}" / "eval_pt.json").is_file() for t in TASKS for s in SEEDS):
        table, _ = downstream(root, "eval_pt.json")
        print("## Downstream: soft-prompt tuning (accuracy, macro-F1 in %)\n\n" + table + "\n")

    print("## MMD² (RBF, median-heuristic bandwidth; mean ± std over seeds, ×100)\n")
    print("| quantity | " + " | ".join(TASKS.values()) + " |\n|---|" + "---|" * len(TASKS))
    for key, label in MMD:
        print(f"| {label} | " + " | ".join(cell([e["mmd2"][key] for s in SEEDS if (e := load(root / t / f"seed{s}" /
                                                                                             "eval.json"))], 100, 2)
                                           for t in TASKS) + " |")

    print("\n## MMD² of the weights fit (vs the few-shot real rows it was fitted to; mean ± std over seeds, ×100)\n")
    print("| quantity | " + " | ".join(TASKS.values()) + " |\n|---|" + "---|" * len(TASKS))
    fits = {t: [f for s in SEEDS if (f := load(root / t / f"seed{s}" / "weights" / "resampled.jsonl.report.json"))]
            for t in TASKS}
    for key, label, scale in (("mmd2_uniform", "uniform weights (all synthetic rows)", 100),
                              ("mmd2_weighted", "learned weights ω", 100),
                              ("mmd2_resampled", "after resampling N rows with replacement", 100),
                              ("effective_sample_size", "effective sample size 1/Σω²", 1),
                              ("unique_resampled", "distinct rows after resampling", 1)):
        print(f"| {label} | " + " | ".join(cell([f[key] for f in fits[t]], scale, 2 if scale == 100 else 1)
                                           for t in TASKS) + " |")

    print("\n## Generation and selection (sums over seeds; coverage: mean over seeds)\n")
    print("| task | LLM jobs | attributes not parsed | items kept | hit the cap | copies of a train row | "
          "distinct after resampling | hull coverage GP / random | ball coverage GP / random |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t, name in TASKS.items():
        train = {norm(r["text"]) for r in rows(Path("data") / t / "train.jsonl")}
        jobs = unparsed = kept = capped = copies = 0
        distinct, hull, hull_r, ball, ball_r = [], [], [], [], []
        for s in SEEDS:
            d = root / t / f"seed{s}"
            stats, sel = load(d / "generate" / "synalign_generation_stats.json"), load(d / "demos.jsonl.report.json")
            syn, res = rows(d / "generate" / "samples.jsonl"), rows(d / "weights" / "resampled.jsonl")
            if not stats or not sel:
                continue
            jobs += stats["attribute_replies"]
            unparsed += stats["unparsed_attributes"]
            kept += len(syn)
            capped += sum(bool(r.get("hit_cap")) for r in syn)
            copies += sum(norm(r["text"]) in train for r in syn)
            distinct += [len({r["text"] for r in res})] if res else []
            hull += [sel["hull_coverage_gp"]]
            hull_r += [sel["hull_coverage_random"]]
            ball += [sel["coverage_gp"]]
            ball_r += [sel["coverage_random"]]
        if hull:
            print(f"| {name} | {jobs} | {unparsed} | {kept} | {capped} | {copies} | "
                  f"{', '.join(map(str, distinct))} | {np.mean(hull):.2f} / {np.mean(hull_r):.2f} | "
                  f"{np.mean(ball):.2f} / {np.mean(ball_r):.2f} |")
        first = root / t / "seed0"
        for src, dst in ((first / "eval.png", f"map_{t}.png"), (first / "demos.jsonl.coverage.png", f"coverage_{t}.png"),
                         (first / "demos.jsonl.tau_sweep.png", f"tau_{t}.png")):
            if src.is_file():
                shutil.copyfile(src, HERE / dst)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/results/synalign/report.py RUN_ROOT (e.g. runs/results-synalign)")
    main(Path(sys.argv[1]))
