"""Table and bar chart of the measured combinations in docs/results/pipeline.md (usage: python report.py S R).

S is the SoftSRV comparison's run root (its SS_MC row is the baseline), R this page's (runs/results-pipeline).
Prints the markdown table and writes ``combinations.png`` next to this file; unfinished rows show as pending.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from synthtune.pipeline.report import plot_mauve_bars

HERE = Path(__file__).resolve().parent


def load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def main(softsrv_root: str, root: str) -> None:
    s, r = Path(softsrv_root), Path(root)
    # (table label, bar label, MAUVE report, what the note reads)
    rows = [("SS_MC, round-robin contexts (baseline)", "round-robin\n(baseline)", s / "ss_mc/samples.mauve.json", None),
            ("SS_MC, GP-chosen contexts", "GP-chosen\ncontexts", r / "gp/samples.mauve.json", None),
            ("SS_MC, MMD-resampled toward real train", "MMD\nresampled", r / "mmd/resampled.mauve.json",
             r / "mmd/resampled.jsonl.report.json"),
            ("SS_MC, resampled uniformly (control)", "uniformly\nresampled", r / "uniform/resampled.mauve.json",
             r / "uniform/resampled.jsonl")]
    lines = ["| SS_MC samples (500 each) | MAUVE vs GSM8K test (mean ± std, 3 k-means seeds) | note |", "|---|---:|---|"]
    reports = {}
    for label, bar, report_file, extra_file in rows:
        report = load(report_file)
        extra = load(extra_file) if extra_file is not None and extra_file.suffix == ".json" else None
        note = ""
        if extra_file is not None and extra_file.suffix == ".jsonl" and extra_file.is_file():
            texts = [json.loads(line)["text"] for line in extra_file.read_text(encoding="utf-8").split("\n") if line.strip()]
            note, extra = f"{len(set(texts))} distinct rows of {len(texts)}", None
        if extra:
            note = (f"MMD² to real {extra['mmd2_uniform']:.4f} → {extra['mmd2_resampled']:.4f}; "
                    f"{extra['unique_resampled']} distinct rows of {report['num_synthetic'] if report else '?'}")
        if report is None:
            lines.append(f"| {label} | pending | {note} |")
            continue
        lines.append(f"| {label} | {report['mean']:.3f} ± {report['std']:.3f} | {note} |")
        reports[bar] = report
    print("\n".join(lines))
    if reports:
        plot_mauve_bars(reports, HERE / "combinations.png", colors=["#4c72b0", "#55a868", "#c44e52", "#999999"][:len(reports)],
                        ylabel="MAUVE vs GSM8K test",
                        title="Pipeline combinations on SS_MC (500 samples, SmolLM2-135M, CPU)")
        print(f"\nfigure: {HERE / 'combinations.png'}")

if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) > 2 else ("runs/results-softsrv", "runs/results-pipeline")))
