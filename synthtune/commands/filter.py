"""``synthtune filter``: :func:`synthtune.api.filter.filter_rows`, then its summary table."""

from __future__ import annotations

from typing import Any

from synthtune.api.filter import filter_rows as filter_labelled_rows
from synthtune.commands.files import print_table, printed


def show(result: dict[str, Any], arguments: dict[str, Any]) -> None:
    judged = result["judge"]
    lines = [("input rows", result["input"] - result["broken_lines_skipped"]), ("kept rows", result["output"])]
    lines += [(f"{name}: kept / rows", f"{v['kept']} / {v['rows']}") for name, v in result["labels"].items()]
    if judged:
        lines += [("judge on-label before", judged["on_label_before"]), ("judge on-label after", judged["on_label_after"]),
                  ("judge test accuracy", judged["test_accuracy"])]
    print_table(f"filter ({result['scorer']}): {result['input_path']} -> {result['output_path']}", lines)


filter_rows = printed(filter_labelled_rows, show, required=("output",))
