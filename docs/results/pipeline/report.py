"""Table and bar chart of the measured combinations in docs/results/pipeline.md (usage: python report.py S R).

S is the SoftSRV comparison's run root (its SS_MC row is the baseline), R this page's (runs/results-pipeline).
Prints the markdown table and writes ``combinations.png`` next to this file; unfinished rows show as pending.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent


def load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def main(softsrv_root: str, root: str) -> None:
    s, r = Path(softsrv_root), Path(root)
    rows = [("SS_MC, round-robin contexts (baseline)", s / "ss_mc/samples.mauve.json", None),
            ("SS_MC, GP-chosen contexts", r / "gp/samples.mauve.json", None),
            ("SS_MC, MMD-resampled toward real train", r / "mmd/resampled.mauve.json", r / "mmd/resampled.jsonl.report.json")]
    lines = ["| SS_MC samples (500 each) | MAUVE vs GSM8K test (mean ± std, 3 k-means seeds) | note |", "|---|---:|---|"]
    names, means, stds = [], [], []
    for label, report_file, extra_file in rows:
        report, extra = load(report_file), load(extra_file) if extra_file else None
        note = ""
        if extra:
            note = (f"MMD² to real {extra['mmd2_uniform']:.4f} → {extra['mmd2_resampled']:.4f}; "
                    f"{extra['unique_resampled']} distinct rows of {report['num_synthetic'] if report else '?'}")
        if report is None:
            lines.append(f"| {label} | pending | {note} |")
            continue
        lines.append(f"| {label} | {report['mean']:.3f} ± {report['std']:.3f} | {note} |")
        names.append(label.replace(", ", "\n"))
        means.append(report["mean"])
        stds.append(report["std"])
    print("\n".join(lines))
    if names:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=["#4c72b0", "#55a868", "#c44e52"][:len(names)])
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel("MAUVE vs GSM8K test")
        ax.set_ylim(0, 1)
        ax.set_title("Pipeline combinations on SS_MC (500 samples, SmolLM2-135M, CPU)", fontsize=9)
        for i, (m, sd) in enumerate(zip(means, stds)):
            ax.text(i, min(m + sd + 0.02, 0.95), f"{m:.2f}", ha="center", fontsize=8)
        fig.tight_layout()
        fig.savefig(HERE / "combinations.png", dpi=120)
        print(f"\nfigure: {HERE / 'combinations.png'}")


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) > 2 else ("runs/results-softsrv", "runs/results-pipeline")))
