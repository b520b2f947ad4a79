"""Table and bar chart of docs/results/softsrv.md from the runs of run.sh (usage: python report.py RUN_ROOT).

Reads each row's MAUVE report (``*.mauve.json``: mean and std over the k-means seeds) and samples summary
(how many samples ended at EOS), prints the markdown table and writes ``mauve.png`` next to this file.
A row whose run has not finished yet is shown as pending, so the page can be written as the grid fills.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
#: (label, scored rows) per row, in table order; each file's MAUVE report is <stem>.mauve.json.
ROWS = [
    ("SS_NP", "ss_np/samples.jsonl"),
    ("SS_MPk (k=2)", "ss_mp/samples.jsonl"),
    ("SS_MC", "ss_mc/samples.jsonl"),
    ("PT", "pt/first500.jsonl"),
    ("PT_SR", "pt_sr/first500.jsonl"),
    ("real train questions (ceiling)", "real/train500.jsonl"),
    ("PT, T 0.7 / top-p 0.9", "pt_cool/first500.jsonl"),
    ("SS_MC, T 0.7 / top-p 0.9", "ss_mc_cool/samples.jsonl"),
]


def load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def ended_at_eos(path: Path) -> str:
    """``"k / n"``: how many of the scored rows ended at EOS (rows without ``hit_cap`` are real text: "-")."""
    if not path.is_file():
        return "-"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    flagged = [r for r in rows if "hit_cap" in r]
    return f"{sum(not r['hit_cap'] for r in flagged)} / {len(flagged)}" if flagged else "-"


def main(root: str) -> None:
    root_path = Path(root)
    lines = ["| data (500 questions each) | MAUVE vs GSM8K test (mean ± std, 3 k-means seeds) | samples ended at EOS |",
             "|---|---:|---:|"]
    names, means, stds = [], [], []
    for label, rows_file in ROWS:
        report = load(root_path / rows_file.replace(".jsonl", ".mauve.json"))
        eos = ended_at_eos(root_path / rows_file)
        if report is None:
            lines.append(f"| {label} | pending | {eos} |")
            continue
        lines.append(f"| {label} | {report['mean']:.3f} ± {report['std']:.3f} (n = {report['num_synthetic']}) | {eos} |")
        names.append(label.replace(" (ceiling)", "\n(ceiling)"))
        means.append(report["mean"])
        stds.append(report["std"])
    print("\n".join(lines))
    if names:
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        colors = ["#4c72b0" if n.startswith("SS") else "#999999" if "real" in n else "#dd8452" for n in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=colors)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel("MAUVE vs GSM8K test")
        ax.set_ylim(0, 1)
        ax.set_title("GSM8K questions: SoftSRV vs template baselines (SmolLM2-135M, CPU budget)", fontsize=9)
        for i, (m, s) in enumerate(zip(means, stds)):
            ax.text(i, min(m + s + 0.02, 0.95), f"{m:.2f}", ha="center", fontsize=8)
        fig.tight_layout()
        fig.savefig(HERE / "mauve.png", dpi=120)
        print(f"\nfigure: {HERE / 'mauve.png'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/results-softsrv")
