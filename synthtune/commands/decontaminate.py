"""``synthtune decontaminate``: :func:`synthtune.api.decontaminate.decontaminate`, then its summary table."""

from __future__ import annotations

from typing import Any

from synthtune.api.decontaminate import decontaminate as decontaminate_rows
from synthtune.commands.files import print_table, printed


def show(report: dict[str, Any], arguments: dict[str, Any]) -> None:
    print_table(f"decontaminate ({report['ngram']}-grams): {report['input_path']} -> {report['output_path']}", [
        ("input lines", report["input"]),
        ("broken lines skipped", report["broken_lines_skipped"]),
        ("references", report["num_references"]),
        ("dropped", report["decontaminated_dropped"]),
        ("contamination rate", report["contamination_rate"]),
        ("output", report["output"]),
    ])


decontaminate = printed(decontaminate_rows, show, required=("output",))
