"""Tables and figures of docs/results/softsrv.md from the runs of run.sh (usage: python report.py RUN_ROOT [FIG_DIR]).

Every row is a set of runs ``<row>/seed<s>/<file>`` (for SoftSRV a fit with training seed s and its own 500
samples; for PT its sampling seed; for the real row draw s). For each scored run it reads the MAUVE reports with
MiniLM (``<stem>.mauve.json``) and SmolLM2-135M features (``<stem>.mauve-smollm2.json``), the novelty report
(``<stem>.novelty.json``) and the samples (EOS, '?'), and for the downstream table ``downstream/<row>.seed<s>.json``
and ``downstream/untuned.json``. A MAUVE cell is the mean ± sample std over the runs, with the mean of the runs'
own k-means spreads beside it. Prints the markdown tables, writes ``mauve.png`` and ``downstream.png`` next to this
file, and ``summary.json`` (every per-run number the tables are computed from, to commit beside the page) there too. A row with no finished
run is shown as pending.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from synthtune.paths import atomic_write_json, atomic_write_png
from synthtune.pipeline.report import plot_grouped_bars
from synthtune.records import read_jsonl

HERE = Path(__file__).resolve().parent
#: (label, folder, name of the scored file in each seed folder: run.sh's N rows), in table order.
ROWS = [
    ("SS_NP", "ss_np", r"samples\.jsonl"),
    ("SS_MPk (k=2)", "ss_mp", r"samples\.jsonl"),
    ("SS_MC", "ss_mc", r"samples\.jsonl"),
    ("PT", "pt", r"first\d+\.jsonl"),
    ("PT_SR", "pt_sr", r"first\d+\.jsonl"),
    ("real train questions (ceiling)", "real", r"train\d+\.jsonl"),
    ("PT, T 0.7 / top-p 0.9", "pt_cool", r"first\d+\.jsonl"),
    ("SS_MC, T 0.7 / top-p 0.9", "ss_mc_cool", r"samples\.jsonl"),
    ("PT, our templates, T 1", "pt_ours", r"first\d+\.jsonl"),
]


def load(path: Path) -> Optional[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run_numbers(rows_file: Path) -> dict[str, Any]:
    """Every number of one run: both MAUVEs with their k-means std, novelty, EOS and '?' shares."""
    stem = rows_file.with_suffix("")
    minilm, smol = load(Path(f"{stem}.mauve.json")), load(Path(f"{stem}.mauve-smollm2.json"))
    novelty = load(Path(f"{stem}.novelty.json"))
    rows = read_jsonl(rows_file)
    flagged = [r for r in rows if "hit_cap" in r]
    texts = [r.get("text") or r.get("question") or "" for r in rows]
    return {
        "seed": int(rows_file.parent.name.removeprefix("seed")), "file": str(rows_file), "rows": len(rows),
        "mauve_minilm": minilm["mean"] if minilm else None, "kmeans_std_minilm": minilm["std"] if minilm else None,
        "mauve_smollm2": smol["mean"] if smol else None, "kmeans_std_smollm2": smol["std"] if smol else None,
        "ended_at_eos": sum(not r["hit_cap"] for r in flagged) / len(flagged) if flagged else None,
        "with_question_mark": sum("?" in t for t in texts) / len(texts) if texts else None,
        "distinct_rows": novelty["distinct_rows"] if novelty else None,
        "copy_context": novelty["context"]["share"] if novelty and novelty["context"] else None,
        "copy_train": novelty["train"]["share"] if novelty else None,
        "any_train_ngram": novelty["train"]["any_overlap"] / novelty["num_samples"] if novelty else None,
        "nn_cosine": novelty["nearest_train_cosine"]["mean"] if novelty and novelty["nearest_train_cosine"] else None,
        "near_duplicates": (novelty["nearest_train_cosine"]["share_near"]
                            if novelty and novelty["nearest_train_cosine"] else None),
    }


def values(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in runs if r.get(key) is not None]


def spread(runs: list[dict[str, Any]], key: str, std_key: Optional[str] = None, digits: int = 3) -> str:
    """``mean ± std over runs (n runs)``, with the mean k-means std beside it when ``std_key`` is given."""
    v = values(runs, key)
    if not v:
        return "pending"
    cell = f"{np.mean(v):.{digits}f}" + (f" ± {np.std(v, ddof=1):.{digits}f}" if len(v) > 1 else "") + \
        f" ({len(v)} run{'s' if len(v) > 1 else ''})"
    if std_key and values(runs, std_key):
        cell += f" [k-means ± {np.mean(values(runs, std_key)):.{digits}f}]"
    return cell


def share(runs: list[dict[str, Any]], key: str) -> str:
    v = values(runs, key)
    return f"{100 * np.mean(v):.1f} %" if v else "-"


def mean_of(runs: list[dict[str, Any]], key: str, digits: int = 3) -> str:
    v = values(runs, key)
    return f"{np.mean(v):.{digits}f}" if v else "-"


def main(root: str, figures: str = str(HERE)) -> None:
    base, fig_dir = Path(root), Path(figures)
    table: dict[str, list[dict[str, Any]]] = {}
    for label, folder, name in ROWS:
        table[label] = [run_numbers(f) for f in sorted((base / folder).glob("seed*/*.jsonl"))
                        if re.fullmatch(name, f.name) and Path(f"{f.with_suffix('')}.mauve.json").is_file()]
    out = ["| data (N questions per run) | MAUVE, MiniLM features | MAUVE, SmolLM2-135M features (App. A.7) "
           "| ended at EOS | hold a '?' |", "|---|---:|---:|---:|---:|"]
    for label, runs in table.items():
        out.append(f"| {label} | {spread(runs, 'mauve_minilm', 'kmeans_std_minilm')} "
                   f"| {spread(runs, 'mauve_smollm2', 'kmeans_std_smollm2')} | {share(runs, 'ended_at_eos')} "
                   f"| {share(runs, 'with_question_mark')} |")
    out += ["", "| data | distinct rows | copy their own context (> 50 % of 13-grams) | copy a training "
            "question (> 50 %) | share a 13-gram with a training question | nearest training question, mean cosine "
            "| nearest cosine ≥ 0.95 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, runs in table.items():
        if runs:
            out.append(f"| {label} | {mean_of(runs, 'distinct_rows', 0)} | {share(runs, 'copy_context')} "
                       f"| {share(runs, 'copy_train')} | {share(runs, 'any_train_ngram')} | {mean_of(runs, 'nn_cosine')} "
                       f"| {share(runs, 'near_duplicates')} |")
    floor = load(base / "downstream" / "untuned.json")
    tuned: dict[str, list[dict[str, Any]]] = {}
    for label, folder, _ in ROWS:
        tuned[label] = [r for f in sorted((base / "downstream").glob(f"{folder}.seed*.json")) if (r := load(f))]
    out += ["", "| tuned on (N questions, same steps and seed) | NLL per token of the GSM8K test questions "
            "| train loss, first → last tenth of the steps |", "|---|---:|---:|",
            f"| nothing (untuned floor) | {floor['nll_per_token']:.4f} | - |" if floor else "| nothing (untuned floor) "
            "| pending | - |"]
    for label, runs in tuned.items():
        if runs:
            out.append(f"| {label} | {spread(runs, 'nll_per_token', digits=4)} | {mean_of(runs, 'train_loss_first', 3)} "
                       f"→ {mean_of(runs, 'train_loss_last', 3)} |")
    print("\n".join(out))
    # every per-run number the tables come from, committed next to the page (FIG_DIR)
    atomic_write_json(fig_dir / "summary.json", {"mauve_and_novelty": table, "downstream": tuned, "untuned": floor})
    bars = {label.replace(" (ceiling)", "\n(ceiling)").replace(", ", "\n"):
            {"MiniLM": values(runs, "mauve_minilm"), "SmolLM2-135M": values(runs, "mauve_smollm2")}
            for label, runs in table.items() if runs}
    if bars:
        plot_grouped_bars(bars, fig_dir / "mauve.png", ylabel="MAUVE vs GSM8K test",
                          title="GSM8K questions, mean ± std over runs (dots: runs)")
        print(f"\nfigure: {fig_dir / 'mauve.png'}")
    if any(tuned.values()):
        plot_downstream(tuned, floor, fig_dir / "downstream.png")
        print(f"figure: {fig_dir / 'downstream.png'}")


def plot_downstream(tuned: dict[str, list[dict[str, Any]]], floor: Optional[dict[str, Any]], path: Path) -> None:
    """NLL per token after tuning on each row's questions: mean ± std over seeds, each seed a dot, the untuned
    model as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = {label: values(runs, "nll_per_token") for label, runs in tuned.items() if runs}
    fig = Figure(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for x, (label, v) in enumerate(rows.items()):
        ax.errorbar([x], [np.mean(v)], yerr=[np.std(v, ddof=1) if len(v) > 1 else 0.0], fmt="o", capsize=4,
                    color="#4c72b0" if label.startswith("SS") else "#999999" if "real" in label else "#dd8452")
        ax.scatter([x] * len(v), v, color="black", s=6, zorder=3)
    if floor:
        ax.axhline(floor["nll_per_token"], color="black", linestyle="--", linewidth=1, label="untuned (floor)")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([label.replace(", ", "\n") for label in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("NLL per token, GSM8K test questions")
    ax.set_title("LoRA-tuned SmolLM2-135M (lower: closer to GSM8K)", fontsize=9)
    fig.tight_layout()
    atomic_write_png(fig, path)


if __name__ == "__main__":
    main(*(sys.argv[1:3] or ["runs/results-softsrv"]))
