"""Table and chart of the measured combinations in docs/results/pipeline.md (usage: python report.py S R [FIG_DIR]).

S is the SoftSRV comparison's run root (its SS_MC runs ``ss_mc/seed<s>`` are the baseline), R this page's
(runs/results-pipeline, one folder ``seed<s>`` per SS_MC fit). For every set it reads the MAUVE reports with
MiniLM features (the space the MMD weights were fitted in) and with SmolLM2-135M features (a space they were not
fitted in) and counts the distinct rows; a cell is the mean ± sample std over the seeds, with the mean k-means
spread beside it. Prints the markdown table and writes ``combinations.png`` and ``summary.json`` (every per-run
number, to commit beside the page) into FIG_DIR (default: next to this file); unfinished rows show as pending.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from synthtune.paths import atomic_write_json
from synthtune.pipeline.report import plot_grouped_bars

HERE = Path(__file__).resolve().parent
#: (table label, bar label, path of the scored rows relative to a seed's folder, which root it is under)
ROWS = [
    ("SS_MC, round-robin contexts (baseline)", "round-robin\n(baseline)", "samples.jsonl", "softsrv"),
    ("SS_MC, GP-chosen contexts", "GP-chosen\ncontexts", "gp/samples.jsonl", "pipeline"),
    ("SS_MC, MMD-resampled toward real train", "MMD\nresampled", "mmd/resampled.jsonl", "pipeline"),
    ("uniformly resampled (500 draws with replacement)", "uniform\n(500 draws)", "uniform/resampled.jsonl", "pipeline"),
    ("control: uniform, as many distinct rows as MMD", "uniform,\nmatched", "controls/uniform.jsonl", "pipeline"),
    ("control: EOS-ended only, as many distinct rows as MMD", "EOS only,\nmatched", "controls/eos.jsonl", "pipeline"),
]


def load(path: Path) -> Optional[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def numbers(rows_file: Path) -> Optional[dict[str, Any]]:
    """Both MAUVEs with their k-means std and the distinct rows of one scored set; ``None`` before it is scored."""
    stem = rows_file.with_suffix("")
    minilm, smol = load(Path(f"{stem}.mauve.json")), load(Path(f"{stem}.mauve-smollm2.json"))
    if minilm is None:
        return None
    rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").split("\n") if line.strip()]
    # an MMD draw's rows carry the sample they copy as synthetic_id (their own id is the draw position)
    distinct = len({r.get("synthetic_id", r.get("id", r["text"])) for r in rows})
    return {"file": str(rows_file), "rows": len(rows), "distinct": distinct,
            "mauve_minilm": minilm["mean"], "kmeans_std_minilm": minilm["std"],
            "mauve_smollm2": smol["mean"] if smol else None, "kmeans_std_smollm2": smol["std"] if smol else None}


def cell(runs: list[dict[str, Any]], key: str, std_key: str) -> str:
    v = [r[key] for r in runs if r.get(key) is not None]
    if not v:
        return "pending"
    k = np.mean([r[std_key] for r in runs if r.get(std_key) is not None])
    return (f"{np.mean(v):.3f}" + (f" ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else "") +
            f" ({len(v)} run{'s' if len(v) > 1 else ''}) [k-means ± {k:.3f}]")


def main(softsrv_root: str, root: str, figures: str = str(HERE)) -> None:
    s, r = Path(softsrv_root), Path(root)
    seeds = sorted({p.name for p in (s / "ss_mc").glob("seed*")} | {p.name for p in r.glob("seed*")})
    lines = ["| SS_MC samples (500 rows each) | MAUVE, MiniLM features (the MMD fit's space) | MAUVE, SmolLM2-135M "
             "features (not fitted on) | distinct rows |", "|---|---:|---:|---:|"]
    table, bars = {}, {}
    for label, bar, rel, under in ROWS:
        runs = [n for seed in seeds if (n := numbers((s / "ss_mc" if under == "softsrv" else r) / seed / rel))]
        table[label] = runs
        distinct = f"{np.mean([x['distinct'] for x in runs]):.0f}" if runs else "-"
        lines.append(f"| {label} | {cell(runs, 'mauve_minilm', 'kmeans_std_minilm')} "
                     f"| {cell(runs, 'mauve_smollm2', 'kmeans_std_smollm2')} | {distinct} |")
        if runs:
            bars[bar] = {"MiniLM": [x["mauve_minilm"] for x in runs],
                         "SmolLM2-135M": [x["mauve_smollm2"] for x in runs if x["mauve_smollm2"] is not None]}
    print("\n".join(lines))
    atomic_write_json(Path(figures) / "summary.json", table)  # committed next to the page
    if bars:
        path = Path(figures) / "combinations.png"
        plot_grouped_bars(bars, path, ylabel="MAUVE vs GSM8K test",
                          title="Pipeline combinations on SS_MC (500 rows, SmolLM2-135M generator)")
        print(f"\nfigure: {path}")


if __name__ == "__main__":
    main(*(sys.argv[1:4] if len(sys.argv) > 2 else ("runs/results-softsrv", "runs/results-pipeline")))
