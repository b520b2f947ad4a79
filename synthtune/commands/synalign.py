"""``synthtune synalign select|evaluate``: :mod:`synthtune.api.synalign`, then what it found.

SynAlign's data steps (Ren et al.): GP exploration-aware demonstrations with their coverage, and the downstream
evaluation of real, synthetic and MMD-resampled training sets.
"""

from __future__ import annotations

from typing import Any

from synthtune.api.synalign import evaluate as evaluate_sets, select as select_demonstrations
from synthtune.commands.files import fmt, printed


def show_selection(report: dict[str, Any], arguments: dict[str, Any]) -> None:
    repeats = report.get("pool_repeats_dropped")
    print(f"selected {report['budget']} of {report['pool_size']} pool rows"
          + (f" ({repeats} repeated texts dropped)" if repeats else "")
          + f" in {report['clusters']} clusters -> {report['output']}")
    print(f"coverage at r={report['r']:.3f} (tau={report['tau']:.3f}): GP {report['coverage_gp']:.3f}, "
          f"random {report['coverage_random']:.3f}; convex hull (2-D PCA): GP {report['hull_coverage_gp']:.3f}, "
          f"random {report['hull_coverage_random']:.3f}; covering radius: GP {report['covering_radius_gp']:.3f}, "
          f"random {report['covering_radius_random']:.3f}; plot: {report['coverage_png']}")
    if report.get("tau_sweep"):
        print("coverage against tau: " + ", ".join(f"tau={row['tau']:.3g}: ball {row['coverage_ball']:.3f} / "
                                                   f"hull {row['coverage_hull']:.3f}" for row in report["tau_sweep"])
              + f"; plot: {report['tau_sweep_png']}")


def show_evaluation(report: dict[str, Any], arguments: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SynAlign downstream ({report['task']}, {report['test_rows']} test rows)")
    for column in ("train set", "rows", "accuracy", "macro-F1"):
        table.add_column(column, justify="left" if column == "train set" else "right")
    for row in report["results"]:
        table.add_row(row["train_set"], str(row["rows"]), fmt(row["accuracy"]), fmt(row["macro_f1"]))
    console = Console()
    console.print(table)
    console.print("MMD² " + ", ".join(f"{k}={fmt(v)}" for k, v in report["mmd2"].items() if k != "bandwidths"))
    console.print(f"report: {report['output']}; map: {report['plot']}")


select = printed(select_demonstrations, show_selection)
evaluate = printed(evaluate_sets, show_evaluation)
