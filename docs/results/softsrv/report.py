"""Table and bar chart of docs/results/softsrv.md from the runs of run.sh (usage: python report.py RUN_ROOT).

Reads each row's MAUVE report (``*.mauve.json``: mean and std over the k-means seeds) and samples summary
(how many samples ended at EOS), prints the markdown table and writes ``mauve.png`` next to this file.
A row whose run has not finished yet is shown as pending, so the page can be written as the grid fills.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from synthtune.pipeline.report import plot_mauve_bars, sample_counts

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


def main(root: str) -> None:
    root_path = Path(root)
    lines = ["| data (500 questions each) | MAUVE vs GSM8K test (mean ± std, 3 k-means seeds) | ended at EOS | hold a '?' "
             "| MAUVE of the samples that ended at EOS |", "|---|---:|---:|---:|---:|"]
    reports = {}
    for label, rows_file in ROWS:
        report = load(root_path / rows_file.replace(".jsonl", ".mauve.json"))
        eos, asks = sample_counts(root_path / rows_file)
        clean = load(root_path / rows_file.replace(".jsonl", ".eos.mauve.json"))
        clean_cell = f"{clean['mean']:.3f} ± {clean['std']:.3f} (n = {clean['num_synthetic']})" if clean else "-"
        if report is None:
            lines.append(f"| {label} | pending | {eos} | {asks} | {clean_cell} |")
            continue
        lines.append(f"| {label} | {report['mean']:.3f} ± {report['std']:.3f} (n = {report['num_synthetic']}) | {eos} "
                     f"| {asks} | {clean_cell} |")
        reports[label.replace(" (ceiling)", "\n(ceiling)").replace(", ", "\n")] = report
    print("\n".join(lines))
    if reports:
        colors = ["#4c72b0" if n.startswith("SS") else "#999999" if "real" in n else "#dd8452" for n in reports]
        plot_mauve_bars(reports, HERE / "mauve.png", colors=colors, ylabel="MAUVE vs GSM8K test",
                        title="GSM8K questions: SoftSRV vs template baselines (SmolLM2-135M, CPU budget)")
        print(f"\nfigure: {HERE / 'mauve.png'}")

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/results-softsrv")
