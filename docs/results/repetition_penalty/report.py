"""Table and bar chart of docs/results/repetition_penalty.md (usage: python report.py RUN_ROOT).

Reads, per penalty, the samples (``penalty-<p>.jsonl``), their length-cap summary and their MAUVE report,
prints the markdown table and writes ``mauve.png`` next to this file. A penalty whose run has not finished
yet is shown as pending.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from synthtune.pipeline.report import plot_mauve_bars, sample_counts

HERE = Path(__file__).resolve().parent
PENALTIES = ["1.0", "1.1", "1.2", "1.3"]


def main(root: str) -> None:
    root_path = Path(root)
    lines = ["| repetition penalty | ended at EOS | of the capped: loops | hold a '?' "
             "| MAUVE vs GSM8K test (mean ± std, 3 k-means seeds) |", "|---|---:|---:|---:|---:|"]
    reports = {}
    for p in PENALTIES:
        rows, mauve = root_path / f"penalty-{p}.jsonl", root_path / f"penalty-{p}.mauve.json"
        summary = root_path / f"penalty-{p}.jsonl.summary.json"
        if not (mauve.is_file() and summary.is_file()):
            lines.append(f"| {p} | pending | | | |")
            continue
        report, counts = json.loads(mauve.read_text()), json.loads(summary.read_text())
        eos, asks = sample_counts(rows)
        label = "1.0 (off)" if p == "1.0" else p
        lines.append(f"| {label} | {eos} | {counts['repetition_loops']} of {counts['hit_cap']} | {asks} "
                     f"| {report['mean']:.3f} ± {report['std']:.3f} |")
        reports[f"{label}\n{eos.replace(' ', '')} EOS"] = report
    print("\n".join(lines))
    if reports:
        plot_mauve_bars(reports, HERE / "mauve.png", ylabel="MAUVE vs GSM8K test",
                        title="Demo prompt, 256 samples per repetition penalty")
        print(f"\nfigure: {HERE / 'mauve.png'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/results-repetition-penalty")
