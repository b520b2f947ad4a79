"""``synthtune curate``: :func:`synthtune.api.curate.curate`, then its summary table."""

from __future__ import annotations

from typing import Any

from synthtune.api.curate import curate as curate_rows
from synthtune.commands.files import print_table, printed


def show(report: dict[str, Any], arguments: dict[str, Any]) -> None:
    print_table(f"curate: {report['input_path']} -> {report['output_path']}", [
        ("input lines", report["input"]),
        ("broken lines skipped", report["broken_lines_skipped"]),
        ("after dedup", report["after_dedup"]),
        ("decontaminated dropped", report["decontaminated_dropped"]),
        ("contamination rate", report["contamination_rate"]),
        ("clusters used", report["clusters_used"]),
        ("selected", report["selected"]),
        ("output", report["output"]),
    ])


curate = printed(curate_rows, show, required=("output",))
